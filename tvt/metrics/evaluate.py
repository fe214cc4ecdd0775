"""Evaluate a folder of SR images against GT with the Table 2 protocol; optionally super-resolve a dataset first.

    python scripts/eval.py --pred out/sr --gt ../shared/benchmarks/RealSR/HR --metrics psnr,ssim,fsim --out eval/
    python scripts/eval.py --model bicubic --dataset RealSR --out eval/bicubic_realsr

Writes OUT/per_image.csv (name + one column per metric), OUT/summary.json (metric -> mean, num_images,
protocol, lower_better, unavailable) and OUT/summary.md. Files are matched by stem (any image extension).
Exit codes: 0 ok (unavailable metrics are reported, not fatal); 2 input error; 1 under --strict when a
metric was unavailable.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import InputError
from ..io import ImageReadError, atomic_path, list_images, pil_to_tensor, read_image, save_image
from .registry import (METRICS, TABLE2_METRICS, MetricUnavailable, build_metric, get_spec, lower_better, parse_metric_list)

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASETS_YAML = REPO_ROOT / "configs" / "datasets.yaml"
EXIT_OK, EXIT_UNAVAILABLE, EXIT_INPUT = 0, 1, 2


class EvalInputError(InputError):
    """Bad inputs: unmatched names, size mismatches, unknown dataset/metric, missing folders."""


# ---------------------------------------------------------------------------------------------
# Datasets (configs/datasets.yaml)
# ---------------------------------------------------------------------------------------------
@dataclass
class DatasetEntry:
    root: str = ""       # relative to the repo root (or absolute)
    hr: str = "HR"       # subfolder of GT images
    lr: str = "LR"       # subfolder of LR inputs
    scale: int = 4
    note: str = ""


@dataclass
class DatasetsConfig:
    datasets: dict[str, DatasetEntry] = field(default_factory=dict)


def load_datasets(path: str | Path = DATASETS_YAML) -> dict[str, DatasetEntry]:
    from ..config import load_config

    return dict(load_config(DatasetsConfig, path).datasets)


def dataset_dirs(name: str, root: str | Path | None = None, path: str | Path = DATASETS_YAML) -> tuple[Path, Path, int]:
    """(lr_dir, hr_dir, scale) of a named dataset; ``root`` replaces the configured root."""
    datasets = load_datasets(path)
    if name not in datasets:
        raise EvalInputError(f"unknown dataset '{name}'; known in {path}: {', '.join(datasets)}")
    entry = datasets[name]
    base = Path(root) if root else Path(entry.root)
    if not base.is_absolute():
        base = REPO_ROOT / base
    lr, hr = base / entry.lr, base / entry.hr
    for d in (lr, hr):
        if not d.is_dir():
            hint = f" ({entry.note})" if entry.note else ""
            raise EvalInputError(f"dataset '{name}': folder not found: {d}{hint}; set --dataset-root")
    return lr, hr, entry.scale


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
    """Pair images by stem. Returns (pairs, problems). Unmatched names or size mismatches raise
    EvalInputError listing them, unless ``allow_missing`` (then they are skipped and listed in problems)."""
    pred, gt = _by_stem(pred_dir), _by_stem(gt_dir)
    problems = [f"only in pred: {n}" for n in sorted(pred.keys() - gt.keys())]
    problems += [f"only in gt: {n}" for n in sorted(gt.keys() - pred.keys())]
    pairs = []
    for n in sorted(pred.keys() & gt.keys()):
        with Image.open(pred[n]) as a, Image.open(gt[n]) as b:
            if a.size != b.size:
                problems.append(f"size mismatch: {n} pred {a.size[0]}x{a.size[1]} vs gt {b.size[0]}x{b.size[1]}")
                continue
        pairs.append((n, pred[n], gt[n]))
    if problems and not allow_missing:
        raise EvalInputError("pred/gt do not match (use --allow-missing to skip):\n  " + "\n  ".join(problems))
    if not pairs:
        raise EvalInputError(f"no matching image pairs between {pred_dir} and {gt_dir}")
    return pairs, problems


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
def evaluate_folders(pred_dir, gt_dir=None, metrics=None, device: str = "cpu", allow_missing: bool = False,
                     progress: bool = True) -> dict:
    """Score every image; returns {"per_image": {name: {metric: value}}, "summary": {...}}.

    Full-reference metrics and fid need ``gt_dir``; no-reference metrics run on ``pred_dir`` alone.
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
    for name in metrics:
        try:
            built[name] = build_metric(name, device)
        except MetricUnavailable as err:
            unavailable[name] = str(err)
            print(f"[eval] {name}: unavailable: {err}", file=sys.stderr)

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
                print("[eval] fid: computed on the whole folders, unmatched files included", file=sys.stderr)
            means[m] = float(built[m](str(pred_dir), str(gt_dir)))

    summary = {m: means[m] for m in metrics if m in means}
    summary.update({
        "num_images": len(pairs),
        "protocol": {m: get_spec(m).protocol for m in metrics},
        "lower_better": {m: lower_better(m) for m in metrics},
        "unavailable": unavailable,
        "skipped": problems,
        "pred": str(pred_dir), "gt": str(gt_dir) if gt_dir else None, "device": device,
        "pyiqa_version": _pyiqa_version(), "torch_version": torch.__version__,
    })
    return {"per_image": per_image, "summary": summary, "metrics": metrics}


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
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
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
    if summary["unavailable"]:
        lines += ["", "## Unavailable", ""] + [f"- **{m}**: {r}" for m, r in summary["unavailable"].items()]
    if summary.get("skipped"):
        lines += ["", "## Skipped (--allow-missing)", ""] + [f"- {p}" for p in summary["skipped"]]
    return "\n".join(lines) + "\n"


def _fmt(v: float) -> str:
    return "nan" if math.isnan(v) else f"{v:.4f}"


# ---------------------------------------------------------------------------------------------
# Super-resolve a dataset first (--model)
# ---------------------------------------------------------------------------------------------
def super_resolve_folder(model: str, lr_dir, out_dir, scale: int = 4, progress: bool = True,
                         device: str = "cpu") -> Path:
    """SR every LR image into ``out_dir`` as <stem>.png: ``bicubic`` or a TVTPipeline folder/id.

    ``bicubic`` is PIL's (the usual "Bicubic" row of SR tables), not the pipeline's torch bicubic, whose kernel
    (a=-0.75) gives slightly different numbers."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe = None
    if model != "bicubic":
        from ..pipeline import TVTPipeline  # lazy: heavy, and not needed for bicubic

        pipe = TVTPipeline.from_pretrained(model, device=device)
    for p in tqdm(list_images(lr_dir), desc=f"sr ({model})", unit="img", disable=not progress):
        lr = read_image(p)
        if pipe is None:
            sr = lr.resize((lr.width * scale, lr.height * scale), Image.BICUBIC)
        else:
            out = pipe([lr], upscale=scale)
            sr = getattr(out, "images", out)[0]
        save_image(sr, out_dir / f"{p.stem}.png")
    return out_dir


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description="Evaluate SR images with the paper's Table 2 protocol (pyiqa).")
    ap.add_argument("--pred", help="folder of SR images")
    ap.add_argument("--gt", help="folder of GT images (full-reference metrics, fid)")
    ap.add_argument("--model", help="'bicubic' or a TVTPipeline folder: super-resolve --dataset first")
    ap.add_argument("--dataset", help="name in configs/datasets.yaml (RealSR, DRealSR, DIV2K-val)")
    ap.add_argument("--dataset-root", help="override the dataset root (folder holding HR/ and LR/)")
    ap.add_argument("--metrics", help=f"comma list from: {','.join(METRICS)} (default: Table 2's, NR only without --gt)")
    ap.add_argument("--out", "-o", required=True, help="output folder")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--allow-missing", action="store_true", help="skip unmatched / size-mismatched files")
    ap.add_argument("--strict", action="store_true", help="exit 1 if any metric is unavailable")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        pred, gt = args.pred, args.gt
        if args.model or args.dataset:
            if not (args.model and args.dataset):
                raise EvalInputError("--model and --dataset go together")
            lr_dir, hr_dir, scale = dataset_dirs(args.dataset, args.dataset_root)
            pred = super_resolve_folder(args.model, lr_dir, Path(args.out) / "images", scale,
                                        not args.no_progress, args.device)
            gt = gt or hr_dir
        if not pred:
            raise EvalInputError("give --pred DIR (or --model and --dataset)")
        result = evaluate_folders(pred, gt, args.metrics, args.device, args.allow_missing, not args.no_progress)
    except (EvalInputError, ImageReadError, KeyError, FileNotFoundError) as err:
        print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
        return EXIT_INPUT
    paths = write_results(result, args.out)
    print(Path(paths["md"]).read_text())
    if result["summary"]["unavailable"] and args.strict:
        print(f"error (--strict): unavailable metrics: {', '.join(result['summary']['unavailable'])}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK
