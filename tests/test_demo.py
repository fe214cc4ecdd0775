"""The demo: its report, the quickstart notebook (executed), and the whole toy demo at a few steps per stage."""
from pathlib import Path


from tvt_scripts.report import plot_curves, write_report

ROOT = Path(__file__).resolve().parents[1]


def test_report_md_and_html(tmp_path):
    plot_curves({"l1": [(1, 0.5), (2, 0.3)]}, tmp_path / "c.png", "loss")
    md, html = write_report(tmp_path, "T", [("Table", "| a | b |\n|---|---|\n| **1** | <u>2</u> |"), ("Note", "- x `y`")],
                            [("curve", "c.png")])
    text = html.read_text()
    assert "<table>" in text and "<strong>1</strong>" in text and "<u>2</u>" in text and "<li>x <code>y</code></li>" in text
    assert "![curve](c.png)" in md.read_text() and (tmp_path / "c.png").stat().st_size > 0


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "(32, 32) -> (128, 128)" in out and "PSNR-Y" in out


def test_toy_demo_end_to_end(tmp_path, realsr):
    """The whole demo at a few steps per stage on one test pair (the full one is `make demo`)."""
    import shutil

    from tvt_scripts.demo import main

    for sub in ("HR", "LR"):
        (tmp_path / "pair" / sub).mkdir(parents=True)
        shutil.copy(realsr / sub / "Canon_004_LR4.png", tmp_path / "pair" / sub)
    out = tmp_path / "demo"
    assert main([f"output_dir={out}", f"images={tmp_path / 'pair'}", "toy.teacher=3", "toy.stage1=3", "toy.stage2=3",
                 "toy.isr=2", "--crops", "Canon_004_LR4:256,160,128,128"]) == 0
    text = (out / "report.md").read_text()
    assert text.index("toy run") < text.index("Bicubic") and "| TVT |" in text and "VAE-D4" in text
    assert (out / "report.html").is_file() and (out / "crops.png").is_file() and len(list(out.glob("loss_*.png"))) == 4
    assert {p.name for p in (out / "eval").iterdir()} == {"Bicubic", "TVT"}
