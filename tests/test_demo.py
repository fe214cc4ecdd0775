"""The demo: its report, the quickstart notebook (executed), and the whole toy demo at a few steps per stage."""
from pathlib import Path

import pytest


from conftest import SAMPLES
from tvt.demo.report import plot_curves, smooth, write_report

ROOT = Path(__file__).resolve().parents[1]


def test_report_md_and_html(tmp_path):
    plot_curves({"l1": [(1, 0.5), (2, 0.3)]}, tmp_path / "c.png", "loss")
    md, html = write_report(tmp_path, "T", [("Table", "| a | b |\n|---|---|\n| **1** | <u>2</u> |"), ("Note", "- x `y`")],
                            [("curve", "c.png")])
    text = html.read_text()
    assert "<table>" in text and "<strong>1</strong>" in text and "<u>2</u>" in text and "<li>x <code>y</code></li>" in text
    assert "![curve](c.png)" in md.read_text() and (tmp_path / "c.png").stat().st_size > 0


def test_smoothed_curve_is_bias_corrected_and_follows_the_trend():
    assert smooth([2.0] * 5) == pytest.approx([2.0] * 5)  # no pull towards 0 at the start
    noisy = [1.0 / (1 + i / 10) + (0.3 if i % 2 else -0.3) for i in range(100)]
    s = smooth(noisy)
    assert s[-1] < s[10] and max(abs(a - b) for a, b in zip(s[20:], s[21:])) < 0.1  # falls, without the zigzag


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the kernel: tiny models run faster on one thread
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # the kernel's temp folders: none may be left behind
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache"))  # torch's cache, kept (not ours)
    (tmp_path / "work").mkdir()
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path / "work")}}).execute()
    out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "(32, 32) -> (128, 128)" in out and "PSNR-Y" in out
    assert list((tmp_path / "tmp").iterdir()) == [] and list((tmp_path / "work").iterdir()) == []


def test_toy_demo_end_to_end(tmp_path, realsr):
    """`make demo`'s path (the shipped toy VAEs, the one-step model trained live) at two ISR steps on one test pair."""
    import shutil

    from tvt_scripts.demo import main

    for sub in ("HR", "LR"):
        (tmp_path / "pair" / sub).mkdir(parents=True)
        shutil.copy(realsr / sub / "Canon_004_LR4.png", tmp_path / "pair" / sub)
    for sub, ext in (("HR", "png"), ("LR", "png"), ("annos", "txt")):  # two of the text samples, one per language
        (tmp_path / "text" / sub).mkdir(parents=True)
        for name in ("en_01", "zh_02"):
            shutil.copy(SAMPLES / "text" / sub / f"{name}.{ext}", tmp_path / "text" / sub)
    out = tmp_path / "demo"
    assert main([f"output_dir={out}", f"images={tmp_path / 'pair'}", "toy.isr=2", f"text_samples={tmp_path / 'text'}",
                 "--crops", "Canon_004_LR4:256,160,128,128"]) == 0
    text = (out / "report.md").read_text()
    assert text.index("toy run") < text.index("Bicubic") and "VAE-D4" in text
    assert "| TVT, adain colour fix |" in text and "| TVT, wavelet colour fix |" in text
    assert "ship with it (data/samples/toy/" in text  # the report says where the VAEs come from
    assert (out / "report.html").is_file() and (out / "crops.png").is_file() and len(list(out.glob("loss_*.png"))) == 4
    assert {p.name for p in (out / "eval").iterdir()} == {"bicubic", "tvt_adain", "tvt_wavelet"}
    # the first results section: text legibility (PP-OCR ACC/NED) of HR, bicubic, both toy VAEs and TVT
    assert text.index("What this is") < text.index("## Text legibility") < text.index("## RealSR samples")
    for row in ("| HR |", "| Bicubic |", "| VAE-D8 reconstruction (toy) |", "| VAE-D4 reconstruction (toy) |",
                "| TVT (one step, from the LR) |"):
        assert row in text
    assert (out / "text_crops.png").is_file() and "**This run:** The toy VAE-D4 reconstruction (" in text


def test_toy_recipe_trains_ships_and_reuses_its_vaes(tmp_path, capsys):
    """scripts/toy.py trains the VAE stages live and ships them; a toy run started from the shipped folder uses
    exactly those VAEs and their loss logs."""
    import filecmp

    from tvt.demo.toy import ToySteps, train_toy
    from tvt_scripts.toy import main

    ship = tmp_path / "ship"
    assert main([f"work={tmp_path / 'w'}", "steps.teacher=2", "steps.stage1=2", "steps.stage2=2", "isr=false",
                 "--set", "stage1:loss.disc_start=1", f"ship={ship}"]) == 0
    assert f"toy VAEs written to {ship}" in capsys.readouterr().out
    readme = (ship / "README.md").read_text()
    assert "steps.teacher=2" in readme and "--set stage1:loss.disc_start=1" in readme  # the command that made them
    assert "disc_start: 1\n" in (tmp_path / "w" / "runs" / "001-tiny_vae_stage1" / "config.yaml").read_text()
    assert main(["--set", "stage9:loss.disc_start=1"]) == 2 and "<stage>:<key>=<value>" in capsys.readouterr().err
    assert all(len((ship / "runs" / s / "metrics.jsonl").read_text().splitlines()) >= 1 for s in ("teacher", "stage1", "stage2"))
    toy = train_toy(tmp_path / "again", ToySteps(), isr=False, vaes=ship)
    assert toy.vae_d4 == ship / "vae_d4" and toy.vaes_from == ship and "isr" not in toy.runs
    assert filecmp.cmp(toy.sd / "vae" / "diffusion_pytorch_model.safetensors",
                       ship / "vae_d8" / "diffusion_pytorch_model.safetensors", shallow=False)


def test_shipped_toy_vaes_reconstruct_held_out_images():
    """The toy VAEs make demo starts from reconstruct RealSR crops no stage trained on (measured: D4 26.9 dB, D8
    23.0 dB mean PSNR-Y on 128 px centre crops of the six samples): Table 1's direction, D4 well above D8."""
    import torch

    from tvt.demo.toy import SHIPPED_VAES
    from tvt.io import image_to_tensor, list_images
    from tvt.metrics.image import psnr_y
    from tvt.models.vae import load_vae_d4, load_vae_d8
    from tvt.roots import samples_root

    hr = torch.stack([image_to_tensor(p)[:, 192:320, 192:320] for p in list_images(samples_root() / "RealSR" / "HR")])
    psnr = {}
    with torch.no_grad():
        for name, vae in (("d4", load_vae_d4(SHIPPED_VAES / "vae_d4")), ("d8", load_vae_d8(SHIPPED_VAES, subfolder="vae_d8"))):
            rec = ((vae.eval().decode(vae.encode(hr * 2 - 1).latent_dist.mode()).sample + 1) / 2).clamp(0, 1)
            psnr[name] = float(psnr_y(rec, hr).mean())
    assert psnr["d4"] > 26.0 and psnr["d8"] > 22.5 and psnr["d4"] > psnr["d8"] + 3, psnr
