"""The demo's report, the quickstart notebook (executed), and the whole toy demo (slow)."""
import os
from pathlib import Path

import pytest

from tvt_scripts.report import plot_curves, write_report

ROOT = Path(__file__).resolve().parents[1]


def test_report_md_and_html(tmp_path):
    plot_curves({"l1": [(1, 0.5), (2, 0.3)]}, tmp_path / "c.png", "loss")
    md, html = write_report(tmp_path, "T", [("Table", "| a | b |\n|---|---|\n| **1** | <u>2</u> |"), ("Note", "- x `y`")],
                            [("curve", "c.png")])
    text = html.read_text()
    assert "<table>" in text and "<strong>1</strong>" in text and "<u>2</u>" in text and "<li>x <code>y</code></li>" in text
    assert "![curve](c.png)" in md.read_text() and (tmp_path / "c.png").stat().st_size > 0


def test_quickstart_notebook_runs(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    os.environ["MPLBACKEND"] = "Agg"
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "(32, 32) -> (128, 128)" in out and "PSNR-Y" in out


@pytest.mark.slow
def test_toy_demo_end_to_end(tmp_path, realsr, drealsr):
    from tvt.config import load_config
    from tvt.demo import DemoConfig, run

    cfg = load_config(DemoConfig, ROOT / "configs" / "demo.yaml", [
        f"output_dir={tmp_path / 'demo'}", f"realsr={realsr}", f"drealsr={drealsr}", "toy.teacher_steps=5",
        "toy.stage1_steps=5", "toy.stage2_steps=5", "toy.isr_steps=3", "toy.num_eval_images=2",
        "crop_images=[Canon_001_LR4]"])
    md = run(cfg)
    text = md.read_text()
    assert "Toy run" in text and "Bicubic" in text and "TVT" in text and (md.parent / "report.html").is_file()
    assert (md.parent / "crops.png").is_file() and list(md.parent.glob("loss_*.png"))
