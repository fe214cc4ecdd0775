"""Score a folder of SR images against GT with the Table 2 protocol (tvt.metrics.registry).

    result = evaluate_folders("out/sr", "data/RealSR/HR", ["psnr", "ssim", "fsim"])
    write_results(result, "eval/tvt-realsr")   # per_image.csv, summary.json (protocol written in), summary.md

Files are matched by stem (any image extension). Unavailable metrics (weights absent) are reported, not fatal.
"""
from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

from ..errors import InputError
from ..io import ImageReadError, atomic_path, image_size, list_images, pil_to_tensor, read_image
from .registry import TABLE2_METRICS, MetricUnavailable, build_metric, get_spec, lower_better, parse_metric_list

log = logging.getLogger(__name__)



class EvalInputError(InputError):
    """Bad inputs: unmatched names, size mismatches, missing folders."""


# ---------------------------------------------------------------------------------------------
# Matching
# ---------------------------------------------------------------------------------------------
def _by_stem(folder: str | Path) -> dict[str, Path]:
    if not Path(folder).is_dir():
        raise EvalInputError(f"not a folder: {folder}")
    files: dict[str, Path] = {}
    for p in list_images(folder):
        if p.stem in files:
            raise EvalInputError(f"two images with stem '{p.stem}' in {folder}: {files[p.stem].name}, {p.name}")
        files[p.stem] = p
    if not files:
        raise EvalInputError(f"no images in {folder}")
    return files


def match_pairs(pred_dir, gt_dir, allow_missing: bool = False) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """Pair images by stem. Returns (pairs, problems). Unmatched names, unreadable files or size mismatches raise
    EvalInputError listing them, unless ``allow_missing`` (then they are skipped and listed in problems)."""
    pred, gt = _by_stem(pred_dir), _by_stem(gt_dir)
    problems = [f"only in pred: {n}" for n in sorted(pred.keys() - gt.keys())]
    problems += [f"only in gt: {n}" for n in sorted(gt.keys() - pred.keys())]
    pairs = []
    for n in sorted(pred.keys() & gt.keys()):
        try:  # from the headers, upright (EXIF orientation applied, as read_image reads them)
            a, b = image_size(pred[n]), image_size(gt[n])
        except ImageReadError as err:  # e.g. a text file named .png
            problems.append(f"unreadable: {str(err).splitlines()[0]}")
            continue
        if a != b:
            problems.append(f"size mismatch: {n} pred {a[0]}x{a[1]} vs gt {b[0]}x{b[1]}")
            continue
        pairs.append((n, pred[n], gt[n]))
    if problems and not allow_missing:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise EvalInputError(f"{pred_dir} and {gt_dir} do not match ({shown}); allow_missing=true scores the rest")
    if not pairs:
        raise EvalInputError(f"no matching image pairs between {pred_dir} and {gt_dir}")
    return pairs, problems


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
def evaluate_folders(pred_dir, gt_dir=None, metrics=None, device: str = "cpu", allow_missing: bool = False,
                     progress: bool = True, annos=None, recognizer: str = "ppocr") -> dict:
    """Score every image; returns {"per_image": {name: {metric: value}}, "summary": {...}}.

    Full-reference metrics and fid need ``gt_dir``; no-reference metrics run on ``pred_dir`` alone; the text
    metrics (ocr_acc, ocr_ned: tvt.text) need ``annos``, RealCE annotations by image stem, and add "per_line".
    """
    import torch
    from tqdm import tqdm

    metrics = parse_metric_list(metrics or [m for m in TABLE2_METRICS if gt_dir or not get_spec(m).needs_gt])
    if gt_dir is None:
        fr = [m for m in metrics if get_spec(m).needs_gt]
        if fr:
            raise EvalInputError(f"metrics {', '.join(fr)} need --gt")
        pairs, problems = [(n, p, None) for n, p in sorted(_by_stem(pred_dir).items())], []
    else:
        pairs, problems = match_pairs(pred_dir, gt_dir, allow_missing)

    built, unavailable = {}, {}
    text_metrics = [m for m in metrics if get_spec(m).kind == "text"]
    if text_metrics and annos is None:
        raise EvalInputError(f"{', '.join(text_metrics)} need annos= (a folder of RealCE annotations by image stem)")
    for name in metrics:
        if name in text_metrics:
            continue
        try:
            built[name] = build_metric(name, device)
        except MetricUnavailable as err:
            unavailable[name] = str(err)
            log.warning("%s: unavailable: %s", name, err)

    per_image: dict[str, dict[str, float]] = {n: {} for n, _, _ in pairs}
    image_metrics = [m for m in built if get_spec(m).kind != "fid"]
    if image_metrics:
        with torch.inference_mode():
            for name, p, g in tqdm(pairs, desc="eval", unit="img", disable=not progress):
                x = pil_to_tensor(read_image(p))[None].to(device)  # (1, 3, H, W) [0, 1]
                y = pil_to_tensor(read_image(g))[None].to(device) if g is not None else None
                for m in image_metrics:
                    score = built[m](x, y) if get_spec(m).kind == "fr" else built[m](x)
                    per_image[name][m] = float(score.reshape(-1)[0])
    means = {m: sum(v[m] for v in per_image.values()) / len(per_image) for m in image_metrics}
    for m in built:
        if get_spec(m).kind == "fid":
            if problems:  # fid compares whole folders; skipped names would bias it silently
                log.warning("fid: computed on the whole folders, unmatched files included")
            means[m] = float(built[m](str(pred_dir), str(gt_dir)))
    text = {}
    if text_metrics:  # pooled over text lines (RealCE), not a mean of per-image scores
        from ..text.evaluate import score_images

        text = score_images({n: p for n, p, _ in pairs}, annos, recognizer)
        for n, scores in text["per_image"].items():
            per_image[n].update({m: scores[m] for m in text_metrics})
        means.update({m: text["summary"][m] for m in text_metrics})

    summary = {m: means[m] for m in metrics if m in means}
    if text:
        summary.update({k: v for k, v in text["summary"].items() if k not in means})
        summary["annos"] = str(annos)
    summary.update({
        "num_images": len(pairs),
        "protocol": {m: get_spec(m).protocol for m in metrics},
        "lower_better": {m: lower_better(m) for m in metrics},
        "unavailable": unavailable,
        "skipped": problems,
        "pred": str(pred_dir), "gt": str(gt_dir) if gt_dir else None, "device": device,
        "pyiqa_version": _pyiqa_version(), "torch_version": torch.__version__,
    })
    return {"per_image": per_image, "summary": summary, "metrics": metrics, "per_line": text.get("rows")}


def _pyiqa_version() -> str:
    try:
        from pyiqa.version import __version__
        return __version__
    except Exception:  # noqa: BLE001
        return "unknown"


def write_results(result: dict, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary, metrics = result["summary"], [m for m in result["metrics"] if m in result["summary"]]
    per_image_metrics = [m for m in metrics if get_spec(m).kind != "fid"]
    paths = {"csv": out / "per_image.csv", "json": out / "summary.json", "md": out / "summary.md"}
    with atomic_path(paths["csv"]) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", *per_image_metrics])
        for name, scores in result["per_image"].items():
            w.writerow([name, *(repr(scores[m]) for m in per_image_metrics)])
    if result.get("per_line") is not None:
        from ..text.evaluate import write_rows

        paths["lines"] = write_rows(result["per_line"], out / "per_line.csv")
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(summary_markdown(summary, result["metrics"]))
    return paths


def summary_markdown(summary: dict, metrics: list[str]) -> str:
    lines = [f"# Evaluation: {summary.get('pred')}", "",
             f"GT: {summary.get('gt')}, images: {summary['num_images']}, device: {summary.get('device')}, "
             f"pyiqa {summary.get('pyiqa_version')}", "",
             "| metric | mean | better | protocol |", "|---|---|---|---|"]
    for m in metrics:
        value = _fmt(summary[m]) if m in summary else "unavailable"
        arrow = "↓ lower" if summary["lower_better"].get(m) else "↑ higher"
        lines.append(f"| {m} | {value} | {arrow} | {summary['protocol'].get(m, '')} |")
    if "recognizer" in summary:  # scores of different recognizers are not comparable: say which one
        r = summary["recognizer"]
        lines += ["", f"Text lines: {summary['ocr_lines']} (CHN {summary['ocr_lines_CHN']}, ENG {summary['ocr_lines_ENG']}), "
                  f"skipped {len(summary['ocr_skipped_lines'])}; recognizer: {r['name']}: {r['model']}"]
    if summary["unavailable"]:
        lines += ["", "## Unavailable", ""] + [f"- **{m}**: {r}" for m, r in summary["unavailable"].items()]
    if summary.get("skipped"):
        lines += ["", "## Skipped (allow_missing)", ""] + [f"- {p}" for p in summary["skipped"]]
    return "\n".join(lines) + "\n"


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.4f}"
