"""Score SR images with the RealCE protocol: one row per annotated text line, ACC/NED per image and pooled.

    result = score_images({"img_01": sr_rgb_uint8}, "data/RealCE/test/annos", recognizer="ppocr")
    result["rows"]       # [{"image", "line", "language", "gt", "pred", "edit_distance", "ned", "match", ...}]
    result["per_image"]  # {"img_01": {"ocr_acc": .., "ocr_ned": ..}}
    result["summary"]    # ocr_acc, ocr_ned (pooled over lines, Table 3), per language, lines, skipped, recognizer

Images are (H, W, 3) uint8 RGB arrays, (3, H, W) float tensors in [0, 1], or paths; each needs ``<annos>/<name>.txt``
(a missing one is an error naming it). Crops are taken from the BGR image, as Real-CE's ``tensor2img`` gives it.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from ..errors import InputError
from .protocol import aggregate, crop_line, edit_distance, language, line_ned, normalize, read_annotations
from .recognizers import build_recognizer

TEXT_METRICS = ("ocr_acc", "ocr_ned")
ROW_FIELDS = ("image", "line", "language", "gt", "pred", "edit_distance", "ned", "match", "gt_raw", "pred_raw")


def _bgr(image) -> np.ndarray:
    import torch

    from ..io import read_image

    if isinstance(image, (str, Path)):
        image = np.asarray(read_image(image))
    if isinstance(image, torch.Tensor):
        image = (image.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image[..., ::-1])


def score_images(images: dict, annos_dir: str | Path, recognizer="ppocr", **recognizer_options) -> dict:
    """Recognize every annotated line of every image; returns rows, per_image and summary (see the module doc).
    ``recognizer``: a name (tvt.text.recognizers) or an object with ``read(crops, langs)`` and ``describe()``."""
    annotations = {name: read_annotations(Path(annos_dir) / f"{name}.txt") for name in images}
    return score_lines(images, annotations, recognizer, **recognizer_options)


def score_lines(images: dict, annotations: dict, recognizer="ppocr", **recognizer_options) -> dict:
    """``score_images`` on annotations already read: {name: (lines, skips)} as ``read_annotations`` returns."""
    rec = build_recognizer(recognizer, **recognizer_options) if isinstance(recognizer, str) else recognizer
    rows, skipped = [], []
    for name, image in images.items():
        lines, skips = annotations[name]
        skipped += [f"{s.where}: {s.reason}" for s in skips]
        bgr = _bgr(image)
        kept, crops = [], []
        for line in lines:
            crop = crop_line(bgr, line.polygon)
            if crop is None:
                skipped.append(f"{name}.txt:{line.line_no}: degenerate polygon {line.polygon.reshape(-1).tolist()}")
                continue
            kept.append(line)
            crops.append(crop)
        langs = [language(line.text) for line in kept]
        for line, lang, raw in zip(kept, langs, rec.read(crops, langs)):
            gt, pred = normalize(line.text, lang), normalize(raw, lang)
            rows.append({"image": name, "line": line.line_no, "language": lang, "gt": gt, "pred": pred,
                         "edit_distance": edit_distance(pred, gt), "ned": line_ned(pred, gt), "match": int(pred == gt),
                         "gt_raw": line.text, "pred_raw": raw})  # gt/pred: normalized, as compared
    return {"rows": rows, "per_image": per_image_scores(rows, list(images)),
            "summary": summarize(rows, skipped, rec.describe())}


def per_image_scores(rows: list[dict], names: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for name in names:
        pairs = [(r["pred"], r["gt"]) for r in rows if r["image"] == name]
        s = aggregate(pairs) if pairs else {"acc": math.nan, "ned": math.nan}
        out[name] = {"ocr_acc": s["acc"], "ocr_ned": s["ned"]}
    return out


def summarize(rows: list[dict], skipped: list[str], recognizer: dict) -> dict:
    total = aggregate([(r["pred"], r["gt"]) for r in rows])
    out = {"ocr_acc": total["acc"], "ocr_ned": total["ned"], "ocr_lines": total["lines"]}
    for lang in ("CHN", "ENG"):
        s = aggregate([(r["pred"], r["gt"]) for r in rows if r["language"] == lang])
        out.update({f"ocr_acc_{lang}": s["acc"], f"ocr_ned_{lang}": s["ned"], f"ocr_lines_{lang}": s["lines"]})
    out["ocr_skipped_lines"] = skipped
    out["recognizer"] = recognizer
    out["ocr_protocol"] = ("RealCE (Real-CE recognition.py): polygon -> minAreaRect -> perspective crop; CHN if the "
                           "transcript holds U+4E00..U+9FA5; lower-case, per-language character filter, no spaces; "
                           "ACC = exact matches / lines, NED = mean (max_len - ED) / max_len, pooled over lines")
    return out


def write_rows(rows: list[dict], path: str | Path) -> Path:
    """per_line.csv: one row per text line."""
    from ..io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=ROW_FIELDS)
        w.writeheader()
        w.writerows({**r, "ned": f"{r['ned']:.4f}"} for r in rows)
    return path
