"""scripts/infer.py end to end on a tiny export: outputs, names, skips, and one clear line per user error
(main() runs behind the command-line boundary, scripts/_cli.py: user errors -> "error: ..." + exit 2)."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tvt_scripts.infer as cli
from tvt.config import load_config
from tvt.inference import TVTPipeline

FAST = ["--process_size", "0"]  # small test images run at their own size, not the official 512


@pytest.fixture(scope="module")
def tiny_export(tiny_sd, tiny_vae_d4, tmp_path_factory):
    """A tiny TVT export folder (VAE-D4 + CE-UNet built from the tiny SD)."""
    pipe = TVTPipeline.from_sd(tiny_sd, vae_d4=tiny_vae_d4, architecture="tvt")
    return pipe.save_pretrained(tmp_path_factory.mktemp("export") / "tvt_tiny")


@pytest.fixture
def lr_folder(realsr, tmp_path):
    src = sorted((realsr / "LR").glob("*.png"))[:3]
    assert len(src) == 3
    folder = tmp_path / "in"
    folder.mkdir()
    for p in src:
        # small crops keep the test fast; the names are what matters
        Image.open(p).convert("RGB").crop((0, 0, 32, 24)).save(folder / p.name)
    (folder / "notes.txt").write_text("not an image")
    return folder, [p.stem for p in src]


def test_cli_folder_outputs_names_and_failures(tiny_export, lr_folder, tmp_path, capsys, caplog):
    folder, stems = lr_folder
    (folder / "broken.png").write_bytes(b"this is not a png")  # a non-image file named .png
    good = (folder / f"{stems[0]}.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    Image.new("RGB", (1, 1)).save(folder / "dot.png")  # a 1x1 image
    out = tmp_path / "out"
    rc = cli.main(["-i", str(folder), "-o", str(out), "--model", str(tiny_export), "--tile_size", "16",
                   "--color-fix", "wavelet", "--seed", "1", *FAST])
    assert rc == 1  # the three bad files failed, the others were written
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(stems)
    assert all(Image.open(out / f"{s}.png").size == (128, 96) for s in stems)
    assert not list(out.glob(".*"))  # no temp files left behind
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("done 3, skipped 0, failed 3") and "s/image" in summary and summary.endswith(str(out))
    assert "broken.png: cannot read image" in caplog.text and "truncated.png: cannot read image" in caplog.text
    assert "dot.png: input 1x1 is too small" in caplog.text and "notes.txt" in caplog.text  # skipped, with a warning

    for bad in ("broken.png", "truncated.png", "dot.png"):
        (folder / bad).unlink()
    before = (out / f"{stems[0]}.png").stat().st_mtime_ns
    assert cli.main(["-i", str(folder), "-o", str(out), "--model", str(tiny_export), *FAST]) == 0
    assert "done 0, skipped 3, failed 0" in capsys.readouterr().out
    assert (out / f"{stems[0]}.png").stat().st_mtime_ns == before  # not overwritten
    assert cli.main(["-i", str(folder / "*.png"), "-o", str(out), "--model", str(tiny_export), "--overwrite", *FAST]) == 0
    assert "done 3, skipped 0, failed 0" in capsys.readouterr().out


def test_cli_model_latest_run(tiny_export, lr_folder, tmp_path, capsys):
    """--model latest:<run_name>: the export of the newest finished runs/NNN-<run_name>; none is one clear line."""
    import shutil

    folder, stems = lr_folder
    runs = tmp_path / "runs"
    shutil.copytree(tiny_export, runs / "000-isr" / "export")
    (runs / "001-isr").mkdir()  # an unfinished run: no export, not taken
    assert cli.main(["-i", str(folder), "-o", str(tmp_path / "o"), "--model", "latest:isr", "--runs", str(runs), *FAST]) == 0
    assert sorted(p.stem for p in (tmp_path / "o").glob("*.png")) == sorted(stems)
    assert cli.main(["-i", str(folder), "-o", str(tmp_path / "o2"), "--model", "latest:vae_stage2", "--runs", str(runs)]) == 2
    assert "latest:vae_stage2: no finished run 'vae_stage2'" in capsys.readouterr().err


def test_cli_bicubic_single_file(lr_folder, tmp_path):
    folder, stems = lr_folder
    rc = cli.main(["-i", str(folder / f"{stems[0]}.png"), "-o", str(tmp_path / "o"), "--model", "bicubic", "--upscale", "2"])
    assert rc == 0 and Image.open(tmp_path / "o" / f"{stems[0]}.png").size == (64, 48)


@pytest.mark.parametrize("case, message", [
    ("missing model", "model not found"),
    ("empty model folder", "neither a TVT export"),
    ("missing input", "input not found"),
    ("output is a file", "is a file: give a folder"),
    ("upscale 0", "upscale must be between 1 and 4"),
    ("upscale 5", "upscale must be between 1 and 4"),
    ("bad colour fix", "color_fix must be one of adain, wavelet, none"),
])
def test_cli_user_errors_are_one_line(case, message, lr_folder, tmp_path, capsys):
    folder, _ = lr_folder
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.png").write_bytes(b"")
    args = {"input": str(folder), "output": str(tmp_path / "o"), "model": "bicubic"}
    extra = []
    if case == "missing model":
        args["model"] = str(tmp_path / "no_model")
    elif case == "empty model folder":
        args["model"] = str(tmp_path / "empty")
    elif case == "missing input":
        args["input"] = str(tmp_path / "nothing_here")
    elif case == "output is a file":
        args["output"] = str(tmp_path / "file.png")
    elif case.startswith("upscale"):
        extra = ["--upscale", case.split()[1]]
    else:
        extra = ["--color_fix", "sharpen"]
    argv = [x for k, v in args.items() for x in (f"--{k}", v)] + extra
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "o").exists()  # nothing written on a setup error


def test_cli_interrupt_leaves_no_half_written_output(lr_folder, tmp_path, capsys, monkeypatch):
    """Ctrl-C while an image is being written: exit 130, one line, and no partial or temp file."""
    folder, stems = lr_folder

    def interrupted_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half")  # part of the file is on disk when the interrupt comes
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted_save)
    out = tmp_path / "o"
    assert cli.main(["-i", str(folder), "-o", str(out), "--model", "bicubic"]) == 130
    assert capsys.readouterr().err.strip().endswith("interrupted (Ctrl-C)")  # after the progress bar
    assert not out.exists()  # no partial file, no temp file, and no empty folder


def test_cli_aliases_and_help(capsys):
    cfg = load_config(cli.InferConfig, ["-i", "x", "-o", "y", "--model", "bicubic", "--tile_size", "64", "--tile-overlap",
                                        "16", "--align_method", "none", "--dtype", "bf16"], aliases=cli.ALIASES)
    assert (cfg.tile_size, cfg.tile_overlap, cfg.color_fix, cfg.dtype, cfg.overwrite) == (64, 16, "none", "bf16", False)
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(k in text for k in ("-i = --input", "upscale", "1 to 4", "tile_overlap", "prompt_extractor", "overwrite"))


def test_output_folder_holding_the_inputs_is_refused(lr_folder, tmp_path, capsys):
    """-i DIR -o DIR (even with --overwrite) would replace the LR inputs with their outputs: refused, inputs intact."""
    folder, stems = lr_folder
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for inputs in (folder, folder / "*.png", folder / f"{stems[0]}.png"):
        assert cli.main(["-i", str(inputs), "-o", str(folder), "--model", "bicubic", "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: output folder {folder} holds the input(s) ") and err.count("\n") == 1, err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    (folder / "sub").mkdir()  # an output folder inside the input folder holds no input: fine
    assert cli.main(["-i", str(folder), "-o", str(folder / "sub"), "--model", "bicubic"]) == 0


def test_empty_input_is_an_error_unless_allowed_and_leaves_no_folder(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no images here")
    out = tmp_path / "out" / "sr"
    assert cli.main(["-i", str(tmp_path / "in"), "-o", str(out), "--model", "bicubic"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no images found in") and err.count("\n") == 1 and not (tmp_path / "out").exists()
    assert cli.main(["-i", str(tmp_path / "in"), "-o", str(out), "--model", "bicubic", "--allow_empty"]) == 0
    assert "done 0, skipped 0, failed 0" in capsys.readouterr().out and not (tmp_path / "out").exists()


def test_failed_run_leaves_no_empty_output_folder(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.png").write_text("not an image")
    assert cli.main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "bicubic"]) == 1
    assert "failed 1" in capsys.readouterr().out and not (tmp_path / "out").exists()


def test_cuda_device_without_a_gpu_is_one_line(lr_folder, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without a GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    folder, _ = lr_folder
    for device in ("cuda", "cuda:1"):
        assert cli.main(["-i", str(folder), "-o", str(tmp_path / "o"), "--model", "bicubic", "--device", device]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: device '{device}': no CUDA GPU is available here") and err.count("\n") == 1
    assert cli.main(["-i", str(folder), "-o", str(tmp_path / "o"), "--model", "bicubic", "--device", "gpu"]) == 2
    assert "unknown device 'gpu'" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_camera_photo_comes_out_upright(tmp_path):
    """A JPEG stored 192x128 with EXIF Orientation=6 (a portrait photo): the output is portrait, 4x."""
    pixels = np.zeros((128, 192, 3), dtype=np.uint8)
    pixels[:32, :32] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "in").mkdir()
    Image.fromarray(pixels).save(tmp_path / "in" / "photo.jpg", exif=exif, quality=95)
    assert cli.main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "bicubic",
                     "--upscale", "2"]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "photo.png"))
    assert out.shape == (384, 256, 3) and out[:64, -64:].mean() > 200 and out[:64, :64].mean() < 50
