"""scripts/eval.py and scripts/compare.py end to end on tiny folders (in-process through their main()):
outputs agree, every bad input is one line with a non-zero exit, comparisons use the images all methods share."""
import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tvt_scripts.compare import main as compare_main
from tvt_scripts.eval import main as eval_main


def _img(path, seed, size=32):
    arr = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture
def folders(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for i, name in enumerate(["a", "b", "c"]):
        _img(gt / f"{name}.png", i)
        _img(pred / (f"{name}.jpg" if name == "c" else f"{name}.png"), i + 10)  # matched by stem, any extension
    return pred, gt


def test_outputs_agree(folders, tmp_path):
    pred, gt = folders
    out = tmp_path / "out"
    assert eval_main(["--pred", str(pred), "--gt", str(gt), "--metrics", "psnr,ssim", "--out", str(out), "--progress=false"]) == 0
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert [r["name"] for r in rows] == ["a", "b", "c"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_images"] == 3 and summary["unavailable"] == {}
    for m in ("psnr", "ssim"):
        assert summary[m] == pytest.approx(np.mean([float(r[m]) for r in rows]), abs=1e-9)
        assert f"| {m} | {summary[m]:.4f} |" in (out / "summary.md").read_text()
    assert "YCbCr" in summary["protocol"]["psnr"]


def test_unmatched_and_size_mismatch(folders, tmp_path, capsys):
    pred, gt = folders
    _img(pred / "only_pred.png", 5)
    _img(gt / "only_gt.png", 6)
    _img(pred / "b.png", 7, size=40)  # b: size mismatch
    args = ["--pred", str(pred), "--gt", str(gt), "--metrics", "psnr", "--progress=false"]
    assert eval_main(args + ["--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")  # one line, no traceback
    assert "only in pred: only_pred" in err and "only in gt: only_gt" in err and "size mismatch: b" in err
    assert not (tmp_path / "o1").exists()  # nothing half-written
    assert eval_main(args + ["--out", str(tmp_path / "o2"), "--allow_missing"]) == 0
    summary = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert summary["num_images"] == 2 and len(summary["skipped"]) == 3


def test_unavailable_metric_reported_exit_0_unless_strict(folders, tmp_path):
    pred, gt = folders
    args = ["--pred", str(pred), "--gt", str(gt), "--metrics", "psnr,lpips", "--progress=false"]
    assert eval_main(args + ["--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert "psnr" in summary and "lpips" not in summary
    assert "alexnet" in summary["unavailable"]["lpips"]
    assert "lpips" in (tmp_path / "o" / "summary.md").read_text()
    assert eval_main(args + ["--out", str(tmp_path / "s"), "--strict"]) == 1


def test_no_reference_without_gt(folders, tmp_path):
    pred, _ = folders
    assert eval_main(["--pred", str(pred), "--metrics", "niqe", "--out", str(tmp_path / "o"), "--progress=false"]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["num_images"] == 3 and "niqe" in summary["unavailable"]  # its .mat is absent offline
    assert eval_main(["--pred", str(pred), "--metrics", "psnr", "--out", str(tmp_path / "p")]) == 2  # FR needs --gt


def test_bicubic_on_dataset_and_compare(realsr, tmp_path):
    root = tmp_path / "RealSR"
    names = sorted(p.name for p in (realsr / "HR").iterdir())[:3]
    for sub in ("HR", "LR"):
        (root / sub).mkdir(parents=True)
        for n in names:
            shutil.copy(realsr / sub / n, root / sub / n)
    out = tmp_path / "bicubic"
    assert eval_main(["--model", "bicubic", "--dataset", "RealSR", "--data_root", str(tmp_path), "--metrics", "psnr",
                      "--out", str(out), "--progress=false"]) == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == names
    sr = Image.open(out / "images" / names[0])
    assert sr.size == Image.open(root / "HR" / names[0]).size
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_images"] == 3 and 20 < summary["psnr"] < 40
    assert eval_main(["--model", "bicubic", "--dataset", "Nope", "--out", str(tmp_path / "x")]) == 2

    table = tmp_path / "table.md"
    fig = tmp_path / "fig.png"
    stem = names[0].rsplit(".", 1)[0]
    assert compare_main([str(out / "summary.json"), str(out / "summary.json"), "--names", "Bicubic,Again",
                         "--out", str(table), "--crops", f"{stem}:100,100,64,64", "--dirs", f"lr={root / 'LR'}",
                         "--dirs", f"bicubic={out / 'images'}", "--dirs", f"hr={root / 'HR'}", "--figure", str(fig)]) == 0
    assert "| Bicubic | **" in table.read_text() and Image.open(fig).width > 3 * 256


def test_bad_inputs_are_one_line_errors(folders, tmp_path, capsys):
    pred, gt = folders
    cases = [["--pred", str(pred), "--gt", str(gt), "--metrics", "psnr,nosuch"],  # unknown metric
             ["--pred", str(tmp_path / "missing"), "--gt", str(gt)],  # no such folder
             ["--model", "bicubic", "--dataset", "Nope"],  # unknown dataset
             ["--model", "bicubic", "--dataset", "RealSR", "--data_root", str(tmp_path)],  # dataset absent there
             ["--pred", str(pred), "--gt", str(gt), "--bogus", "1"]]  # unknown option
    for args in cases:
        assert eval_main(args + ["--out", str(tmp_path / "o"), "--progress=false"]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, (args, err)
    assert eval_main(["--pred", str(pred)]) == 2 and "out" in capsys.readouterr().err  # out= is required


def test_compare_refuses_or_uses_common_images(folders, tmp_path, capsys):
    pred, gt = folders
    assert eval_main(["--pred", str(pred), "--gt", str(gt), "--metrics", "psnr", "--out", str(tmp_path / "all"),
                      "--progress=false"]) == 0
    (tmp_path / "one").mkdir()
    for sub in ("gt", "pred"):
        (tmp_path / "one" / sub).mkdir()
        shutil.copy(gt / "a.png" if sub == "gt" else pred / "a.png", tmp_path / "one" / sub / "a.png")
    assert eval_main(["--pred", str(tmp_path / "one" / "pred"), "--gt", str(tmp_path / "one" / "gt"), "--metrics", "psnr",
                      "--out", str(tmp_path / "single"), "--progress=false"]) == 0
    capsys.readouterr()
    assert compare_main([str(tmp_path / "all" / "summary.json"), str(tmp_path / "single" / "summary.json")]) == 0
    out = capsys.readouterr().out
    assert "compared on the 1 images all evaluations share (all: 3, single: 1)" in out
    a = json.loads((tmp_path / "single" / "summary.json").read_text())["psnr"]
    assert f"{a:.2f}" in out.split("\n")[2] and f"{a:.2f}" in out.split("\n")[3]  # both rows: image a's score
    (tmp_path / "single" / "per_image.csv").unlink()
    assert compare_main([str(tmp_path / "all" / "summary.json"), str(tmp_path / "single" / "summary.json")]) == 2
    assert "cannot show the evaluations scored the same images" in capsys.readouterr().err


def test_compare_refuses_disjoint_sets_of_equal_size(folders, tmp_path, capsys):
    """Two evaluations of one image each, different images: equal counts prove nothing. With a per_image.csv
    missing, no table and no winner."""
    pred, gt = folders
    for name in ("a", "b"):
        for sub in ("gt", "pred"):
            (tmp_path / name / sub).mkdir(parents=True)
            shutil.copy((gt if sub == "gt" else pred) / f"{name}.png", tmp_path / name / sub / f"{name}.png")
        assert eval_main(["--pred", str(tmp_path / name / "pred"), "--gt", str(tmp_path / name / "gt"), "--metrics",
                          "psnr", "--out", str(tmp_path / f"eval_{name}"), "--progress=false"]) == 0
    (tmp_path / "eval_b" / "per_image.csv").unlink()
    capsys.readouterr()
    table = tmp_path / "table.md"
    assert compare_main([str(tmp_path / "eval_a" / "summary.json"), str(tmp_path / "eval_b" / "summary.json"),
                         "--out", str(table)]) == 2
    out, err = capsys.readouterr()
    assert "**" not in out and not table.exists()
    assert err.startswith("error: ") and err.count("\n") == 1 and "eval_b/per_image.csv missing" in err


def test_non_image_among_predictions_is_one_line(folders, tmp_path, capsys):
    pred, gt = folders
    (pred / "b.png").write_text("not an image")  # replaces a prediction
    args = ["--pred", str(pred), "--gt", str(gt), "--metrics", "psnr", "--progress=false"]
    assert eval_main(args + ["--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "unreadable: cannot read image" in err and "b.png" in err
    assert not (tmp_path / "o1").exists()
    assert eval_main(args + ["--out", str(tmp_path / "o2"), "--allow_missing"]) == 0  # scored on the others
    assert json.loads((tmp_path / "o2" / "summary.json").read_text())["num_images"] == 2


def test_camera_orientation_is_applied_to_predictions_and_gt(tmp_path):
    """A GT photo stored landscape with EXIF Orientation=6 is portrait; an upright prediction of it matches."""
    pixels = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)  # stored 48 wide, 32 high
    exif = Image.Exif()
    exif[0x0112] = 6
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    Image.fromarray(pixels).save(tmp_path / "gt" / "photo.png", exif=exif)  # lossless, so the scores are exact
    Image.fromarray(np.rot90(pixels, -1).copy()).save(tmp_path / "pred" / "photo.png")  # turned clockwise: upright
    assert eval_main(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--metrics", "psnr",
                      "--out", str(tmp_path / "o"), "--progress=false"]) == 0
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["psnr"] >= 60  # identical (pyiqa caps at 80 dB)
