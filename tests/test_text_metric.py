"""The RealCE recognition protocol (tvt.text): crops, string normalisation, ACC/NED, bad annotations, and the real
PP-OCR recognizer on the bundled text samples."""
import numpy as np
import pytest
from PIL import Image

from tvt.text.protocol import (AnnotationError, aggregate, crop_line, language, line_rect, normalize,
                               read_annotations)
from tvt.text.evaluate import score_images

from conftest import SAMPLES

TEXT = SAMPLES / "text"


def test_crop_of_rotated_rectangle_equals_hand_computed_crop():
    # a rectangle with integer corners, its long side along (80, 60) (tilted 36.87 degrees clockwise on screen)
    tl, tr, br, bl = np.array([100, 100]), np.array([180, 160]), np.array([168, 176]), np.array([88, 116])
    yy, xx = np.mgrid[0:300, 0:300].astype(np.float32)
    image = np.stack([0.5 * xx + 0.25 * yy, xx - yy + 300, 0.1 * xx], -1).astype(np.float32)  # linear in x, y
    crop = crop_line(image, np.stack([tl, tr, br, bl]))
    # minAreaRect sizes are 99.99.. x 19.99.., truncated as Real-CE does: 99 x 19; corners map to the crop's corners
    w, h = 99, 19
    assert crop.shape == (h, w, 3)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    pts = tl + u[..., None] * (tr - tl) / (w - 1) + v[..., None] * (bl - tl) / (h - 1)  # (h, w, 2) x, y
    x, y = pts[..., 0], pts[..., 1]
    hand = np.stack([0.5 * x + 0.25 * y, x - y + 300, 0.1 * x], -1)
    np.testing.assert_allclose(crop, hand, atol=1e-2)
    # Real-CE's angle flip, -(90 - |angle|), tilts this (clockwise) line's crop by twice its angle
    (cx, cy), (rw, rh), angle = line_rect(np.stack([tl, tr, br, bl]))
    assert angle == pytest.approx(36.87, abs=0.01) and (rw, rh) == pytest.approx((100, 20), abs=0.01)


def test_normalize_and_language_follow_realce():
    assert language("Room 204") == "ENG" and language("出口 EXIT") == "CHN"
    assert normalize("Open 24-Hours!", "ENG") == "open24hours"  # digits + letters, lower case, no spaces
    assert normalize("欢迎 光临ABC!", "CHN") == "欢迎光临abc!"  # the benchmark alphabet keeps '!' and lower case
    assert normalize("欢迎㐀龥", "CHN") == "欢迎"  # characters outside the alphabet are dropped


def test_acc_and_ned_equal_the_formula():
    pairs = [("hello", "hello"), ("helo", "hello"), ("", "abc"), ("", ""), ("kitten", "sitting")]
    s = aggregate(pairs)
    # ACC: exact matches / lines (the empty pair matches, as in Real-CE); NED: mean of (L - ED) / L per line,
    # L = max(len(pred), len(gt)), 0 when both are empty
    acc = 2 / 5
    ned = (1 + (5 - 1) / 5 + (3 - 3) / 3 + 0 + (7 - 3) / 7) / 5
    assert s["lines"] == 5
    assert s["acc"] == pytest.approx(acc, abs=1e-9) and s["ned"] == pytest.approx(ned, abs=1e-9)


class _Echo:
    """A stand-in recognizer: reads every crop as 'EXIT'."""

    def read(self, crops, langs):
        return ["EXIT" for _ in crops]

    def describe(self):
        return {"name": "echo"}


def test_bad_annotations_are_errors_or_counted_skips(tmp_path):
    (tmp_path / "a.txt").write_text("10,10,60,10,60,30,10,30,Exit\n5,5,5,5,5,5,5,5,Gone\n20,40,60,40,60,60,20,60,\n")
    image = np.zeros((80, 80, 3), np.uint8)
    result = score_images({"a": image}, tmp_path, recognizer=_Echo())
    assert [r["gt"] for r in result["rows"]] == ["exit"] and result["summary"]["ocr_acc"] == pytest.approx(1)
    skipped = result["summary"]["ocr_skipped_lines"]
    assert len(skipped) == 2 and "a.txt:3: empty transcript" in skipped[0] and "a.txt:2: degenerate" in skipped[1]
    (tmp_path / "b.txt").write_text("10,10,60,10,60,30,10,30,Exit\n10,10,sixty,10,Oops\n")
    with pytest.raises(AnnotationError, match=r"b\.txt:2: expected 'x1,y1"):
        read_annotations(tmp_path / "b.txt")
    with pytest.raises(AnnotationError, match=r"annotation file not found: .*c\.txt"):
        score_images({"c": image}, tmp_path, recognizer=_Echo())


def test_ppocr_reads_clean_samples_and_bicubic_lr_worse(monkeypatch):
    import socket

    from tvt.text.recognizers import PPOCRRecognizer

    def no_network(*args, **kwargs):
        raise AssertionError("the recognizer tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)  # its weights are package data: nothing to download
    rec = PPOCRRecognizer()
    names = sorted(p.stem for p in (TEXT / "HR").glob("*.png"))
    assert len(names) == 8
    hr = score_images({n: TEXT / "HR" / f"{n}.png" for n in names}, TEXT / "annos", recognizer=rec)["summary"]
    bicubic = {n: np.asarray(Image.open(TEXT / "LR" / f"{n}.png").convert("RGB").resize((256, 256), Image.BICUBIC))
               for n in names}
    lr = score_images(bicubic, TEXT / "annos", recognizer=rec)["summary"]
    assert hr["ocr_lines"] == lr["ocr_lines"] == 40 and hr["ocr_lines_CHN"] == hr["ocr_lines_ENG"] == 20
    assert hr["ocr_acc"] >= 0.9 and hr["ocr_ned"] >= 0.95
    assert lr["ocr_acc"] <= hr["ocr_acc"] - 0.5 and lr["ocr_ned"] <= hr["ocr_ned"] - 0.5
    assert hr["recognizer"]["name"] == "ppocr" and "PP-OCRv4" in hr["recognizer"]["model"]


def test_missing_official_crnn_weights_is_one_line_naming_the_files(tmp_path):
    from tvt.text.recognizers import RecognizerUnavailable, RealCECRNNRecognizer
    from tvt.weights import WEIGHTS_BY_NAME

    with pytest.raises(RecognizerUnavailable) as err:
        RealCECRNNRecognizer(folder=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "scene_base_CRNN.pth") in msg and str(tmp_path / "crnn.pth") in msg
    assert "Real-CE" in msg
    # the weights doctor lists both files
    assert WEIGHTS_BY_NAME["realce-crnn-chn"].locate()[0].name == "scene_base_CRNN.pth"
    assert WEIGHTS_BY_NAME["realce-crnn-eng"].locate()[0].name == "crnn.pth"


def test_official_crnn_pair_loads_released_layouts_and_reads(tmp_path):
    """State dicts with Real-CE's key names (DataParallel 'module.' prefix, English as a one-element list) load,
    and the pair reads crops of both languages through Real-CE's preprocessing."""
    import torch

    from tvt.text.crnn import CRNNChinese, CRNNEnglish
    from tvt.text.recognizers import RealCECRNNRecognizer

    torch.manual_seed(0)
    chn, eng = CRNNChinese(7935), CRNNEnglish()
    keys = set(chn.state_dict())
    assert {"cnn.conv0.weight", "cnn.batchnorm2.running_mean", "cnn.conv6.bias", "rnn.0.rnn.weight_ih_l0_reverse",
            "rnn.1.embedding.weight"} <= keys and "cnn.batchnorm1.weight" not in keys
    assert chn(torch.rand(1, 3, 32, 100) * 255).shape == (27, 1, 7935)  # W/4 + 2 steps (its padded poolings)
    assert eng(torch.rand(1, 1, 32, 100)).shape == (26, 1, 37)  # W/4 + 1
    torch.save({f"module.{k}": v for k, v in chn.state_dict().items()}, tmp_path / "scene_base_CRNN.pth")
    torch.save([eng.state_dict()], tmp_path / "crnn.pth")
    rec = RealCECRNNRecognizer(folder=tmp_path)
    crops = [np.full((20, 60, 3), 200, np.uint8), np.full((30, 90, 3), 50, np.uint8)]
    texts = rec.read(crops, ["CHN", "ENG"])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert rec.describe()["name"] == "realce-crnn" and "scene_base_CRNN.pth" in rec.describe()["model"]


@pytest.mark.slow
def test_text_samples_are_regenerated_byte_for_byte(tmp_path):
    """scripts/make_text_samples.py rebuilds the shipped samples exactly (needs the Debian fonts it names)."""
    from tvt_scripts.make_text_samples import main

    assert main(["--out", str(tmp_path)]) == 0
    for sub in ("HR", "LR", "annos"):
        shipped = sorted(p.name for p in (TEXT / sub).iterdir())
        assert sorted(p.name for p in (tmp_path / sub).iterdir()) == shipped
        for name in shipped:
            assert (tmp_path / sub / name).read_bytes() == (TEXT / sub / name).read_bytes(), f"{sub}/{name}"


def test_tables_never_mix_recognizers_silently():
    from tvt.metrics.tables import table_markdown

    a = {"ocr_acc": 0.3, "ocr_ned": 0.6, "recognizer": {"name": "ppocr"}}
    b = {"ocr_acc": 0.2, "ocr_ned": 0.5, "recognizer": {"name": "realce-crnn"}}
    assert "ACC/NED recognizer: ppocr" in table_markdown({"A": a, "B": dict(a)}, ["ocr_acc", "ocr_ned"])
    mixed = table_markdown({"A": a, "B": b}, ["ocr_acc", "ocr_ned"])
    assert "do not compare**: A: ppocr; B: realce-crnn" in mixed
    assert "recognizer" not in table_markdown({"A": {"psnr": 20.0}}, ["psnr"])
