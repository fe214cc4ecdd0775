import importlib.util
from pathlib import Path

import pytest
from PIL import Image

from tvt.pipeline import TVTPipeline

ROOT = Path(__file__).resolve().parents[1]


def _load_cli():
    spec = importlib.util.spec_from_file_location("infer_cli", ROOT / "scripts" / "infer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


cli = _load_cli()


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
        # 64x64 crops keep the test fast; the names are what matters
        Image.open(p).convert("RGB").crop((0, 0, 64, 48)).save(folder / p.name)
    (folder / "notes.txt").write_text("not an image")
    return folder, [p.stem for p in src]


def test_cli_folder_outputs_names_and_failures(tiny_export, lr_folder, tmp_path, capsys):
    folder, stems = lr_folder
    (folder / "broken.png").write_bytes(b"this is not a png")
    out = tmp_path / "out"
    rc = cli.main(["-i", str(folder), "-o", str(out), "--model", str(tiny_export), "--tile_size", "32",
                   "--color-fix", "wavelet", "--seed", "1"])
    assert rc == 1  # broken.png failed
    assert sorted(p.stem for p in out.glob("*.png")) == sorted(stems)
    assert all(Image.open(out / f"{s}.png").size == (256, 192) for s in stems)
    assert not list(out.glob(".*"))  # no temp files left behind
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("done 3, skipped 0, failed 1") and "s/image" in summary

    (folder / "broken.png").unlink()
    before = (out / f"{stems[0]}.png").stat().st_mtime_ns
    assert cli.main(["-i", str(folder), "-o", str(out), "--model", str(tiny_export)]) == 0
    assert "done 0, skipped 3, failed 0" in capsys.readouterr().out
    assert (out / f"{stems[0]}.png").stat().st_mtime_ns == before  # not overwritten
    assert cli.main(["-i", str(folder / "*.png"), "-o", str(out), "--model", str(tiny_export), "--overwrite"]) == 0
    assert "done 3, skipped 0, failed 0" in capsys.readouterr().out


def test_cli_bicubic_single_file(lr_folder, tmp_path, capsys):
    folder, stems = lr_folder
    rc = cli.main(["-i", str(folder / f"{stems[0]}.png"), "-o", str(tmp_path / "o"), "--model", "bicubic", "--upscale", "2"])
    assert rc == 0 and Image.open(tmp_path / "o" / f"{stems[0]}.png").size == (128, 96)


def test_cli_missing_weights_and_input(tmp_path, lr_folder, caplog):
    folder, _ = lr_folder
    assert cli.main(["-i", str(folder), "-o", str(tmp_path / "o"), "--model", str(tmp_path / "no_model")]) == 2
    assert "weights not found" in caplog.text or "no folder" in caplog.text
    assert cli.main(["-i", str(tmp_path / "nothing_here"), "-o", str(tmp_path / "o"), "--model", "bicubic"]) == 2


def test_cli_aliases():
    a = cli.parse_args(["-i", "x", "-o", "y", "--model", "bicubic", "--tile_size", "64", "--tile-overlap", "16",
                        "--align_method", "none", "--dtype", "bf16"])
    assert (a.tile_size, a.tile_overlap, a.color_fix, a.dtype, a.overwrite) == (64, 16, "none", "bf16", False)
