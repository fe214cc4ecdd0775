"""RealCE end to end on a fake download made from the bundled text samples: prepare_data --realce arranges it as
Real-CE's x4 protocol, and one tvt-eval call gives Table 3's columns with per-line rows."""
import csv
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from tvt.data.realce import TextPairDataset, text_keeping_crop
from tvt.text.protocol import read_annotations
from tvt_scripts.eval import main as eval_main
from tvt_scripts.prepare_data import main as prepare_main

from conftest import SAMPLES

TEXT = SAMPLES / "text"
NAMES = ["en_01", "zh_01"]


@pytest.fixture
def download(tmp_path):
    """RealCE's download layout: <split>/{13mm,52mm}/<name>.jpg (here PNG data under .jpg names is not needed:
    PNG files), valid_list.txt, test annotations in GBK, training ones as trans_annos_52mm_renov/res_<name>.txt."""
    src = tmp_path / "dl"
    for split in ("val", "train"):
        for sub in ("13mm", "52mm"):
            (src / split / sub).mkdir(parents=True)
        for n in NAMES:
            hr = Image.open(TEXT / "HR" / f"{n}.png").convert("RGB")
            hr.save(src / split / "52mm" / f"{n}.png")
            Image.open(TEXT / "LR" / f"{n}.png").convert("RGB").resize(hr.size, Image.BICUBIC).save(src / split / "13mm" / f"{n}.png")
        (src / split / "valid_list.txt").write_text("".join(f"{n}.png\n" for n in NAMES))
    (src / "val" / "annos").mkdir()
    (src / "train" / "trans_annos_52mm_renov").mkdir()
    for n in NAMES:
        text = (TEXT / "annos" / f"{n}.txt").read_text(encoding="utf-8")
        (src / "val" / "annos" / f"{n}.txt").write_bytes(text.encode("gbk"))
        (src / "train" / "trans_annos_52mm_renov" / f"res_{n}.txt").write_text(text, encoding="utf-8")
    return src


def test_prepare_and_table3_eval(download, tmp_path, capsys):
    root = tmp_path / "root"
    assert prepare_main(["--realce", str(download), "--data_root", str(root)]) == 0
    test = root / "RealCE" / "test"
    # Real-CE's x4 pair: LR = cv2 INTER_CUBIC of the 13 mm image (float) to a quarter of the 52 mm size
    thirteen = np.asarray(Image.open(download / "val" / "13mm" / "en_01.png")).astype(np.float32) / 255
    want = np.clip(np.round(cv2.resize(thirteen, (64, 64), interpolation=cv2.INTER_CUBIC) * 255), 0, 255)
    assert np.array_equal(np.asarray(Image.open(test / "LR" / "en_01.png")), want.astype(np.uint8))
    assert (test / "annos" / "zh_01.txt").read_text(encoding="utf-8") == (TEXT / "annos" / "zh_01.txt").read_text(encoding="utf-8")
    assert sorted(p.name for p in (root / "RealCE" / "train" / "HR").iterdir()) == ["en_01.png", "zh_01.png"]

    out = tmp_path / "eval"
    assert eval_main(["--model", "bicubic", "--dataset", "RealCE", "--data_root", str(root), "--out", str(out),
                      "--progress=false"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for m in ("psnr", "ssim", "ocr_acc", "ocr_ned"):  # lpips too where its weights are present
        assert m in summary
    assert set(summary["protocol"]) == {"psnr", "ssim", "lpips", "ocr_acc", "ocr_ned"}
    assert summary["recognizer"]["name"] == "ppocr" and summary["ocr_lines"] == 10
    rows = list(csv.DictReader(open(out / "per_line.csv", encoding="utf-8")))
    assert len(rows) == 10 and set(rows[0]) == {"image", "line", "language", "gt", "pred", "edit_distance", "ned", "match",
                                          "gt_raw", "pred_raw"}
    assert {r["language"] for r in rows} == {"CHN", "ENG"}
    per_image = list(csv.DictReader(open(out / "per_image.csv")))
    assert {"ocr_acc", "ocr_ned", "psnr"} <= set(per_image[0])
    assert "recognizer: ppocr" in (out / "summary.md").read_text()
    # the official pair without its weights: one line naming the files, exit 2
    capsys.readouterr()
    assert eval_main(["--pred", str(out / "images"), "--gt", str(test / "HR"), "--annos", str(test / "annos"),
                      "--metrics", "ocr_acc", "--recognizer", "realce-crnn", "--out", str(tmp_path / "x"),
                      "--progress=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "scene_base_CRNN.pth" in err and "crnn.pth" in err


def test_missing_annotation_file_is_one_line(tmp_path, capsys):
    (tmp_path / "annos").mkdir()
    assert eval_main(["--pred", str(TEXT / "HR"), "--annos", str(tmp_path / "annos"), "--metrics", "ocr_acc",
                      "--out", str(tmp_path / "x"), "--progress=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "annotation file not found" in err and "en_01.txt" in err


def test_text_keeping_crops_hold_a_whole_line():
    polys = [ln.polygon for ln in read_annotations(TEXT / "annos" / "en_01.txt")[0]]
    for seed in range(20):
        top, left = text_keeping_crop(polys, 256, 256, 128, 4, np.random.default_rng(seed))
        assert top % 4 == 0 and left % 4 == 0 and 0 <= top <= 128 and 0 <= left <= 128
        inside = [p for p in polys if p[:, 0].min() >= left and p[:, 0].max() < left + 128
                  and p[:, 1].min() >= top and p[:, 1].max() < top + 128]
        assert inside, (seed, top, left)
    ds = TextPairDataset(TEXT / "HR", TEXT / "LR", TEXT / "annos", crop_size=128)
    item = ds[0]
    assert item["hr"].shape == (3, 128, 128) and item["lr"].shape == (3, 32, 32) and item["lr_up"].shape == (3, 128, 128)
    assert item["gt"] is item["hr"]


def test_missing_realce_is_one_line_saying_where_to_get_it(tmp_path, capsys):
    assert eval_main(["--model", "bicubic", "--dataset", "RealCE", "--data_root", str(tmp_path), "--out",
                      str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "dataset 'RealCE' not found" in err and str(tmp_path / "RealCE" / "test") in err
    assert "github.com/mjq11302010044/Real-CE" in err and "--realce" in err
    assert prepare_main(["--realce", str(tmp_path / "nothing"), "--data_root", str(tmp_path)]) == 2
    assert "RealCE: no val or test/13mm and 52mm folders under" in capsys.readouterr().err
