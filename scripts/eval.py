"""Evaluate SR images with the Table 2 protocol (pyiqa; PSNR/SSIM on Y of YCbCr), or super-resolve a dataset first.

    python scripts/eval.py --pred out/sr --gt data/RealSR/HR --metrics psnr,ssim,fsim --out eval/tvt-realsr
    python scripts/eval.py --model runs/003-isr/export --dataset RealSR --out eval/tvt-realsr
    python scripts/eval.py --model bicubic --dataset DRealSR --out eval/bicubic-drealsr

Writes OUT/per_image.csv, OUT/summary.json (the protocol written in) and OUT/summary.md; with --model also the
SR images in OUT/images. Datasets are found under the data root (TVT_DATA; scripts/prepare_data.py). Exit 0, or 2
on bad input, or 1 under --strict when a metric was unavailable (its weights absent).
"""
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import MISSING

from tvt.data.catalog import paired_dirs
from tvt.errors import InputError
from tvt.metrics.evaluate import evaluate_folders, write_results
from tvt_scripts._cli import command


@dataclass
class EvalConfig:
    out: str = MISSING  # output folder (required)
    pred: Optional[str] = None  # folder of SR images
    gt: Optional[str] = None  # folder of GT images (full-reference metrics)
    model: Optional[str] = None  # bicubic, an export folder or the official release: super-resolve --dataset first
    dataset: Optional[str] = None  # RealSR | DRealSR | DIV2K-val, under the data root
    data_root: Optional[str] = None  # folder holding the datasets (default: TVT_DATA, else data/ of the checkout)
    metrics: Optional[str] = None  # comma list (default: Table 2's; no-reference ones only without gt)
    device: str = "cpu"
    allow_missing: bool = False  # score the matching images, list the others (default: mismatches are an error)
    strict: bool = False  # exit 1 when a metric is unavailable
    progress: bool = True


@command(EvalConfig)
def main(cfg: EvalConfig) -> int:
    pred, gt = cfg.pred, cfg.gt
    if cfg.model or cfg.dataset:
        if not (cfg.model and cfg.dataset):
            raise InputError("model= and dataset= go together")
        from tvt.pipeline import TVTPipeline, super_resolve_folder

        lr_dir, hr_dir, scale = paired_dirs(cfg.dataset, cfg.data_root)
        pipe = TVTPipeline.from_pretrained(cfg.model, device=cfg.device)
        pred = super_resolve_folder(pipe, lr_dir, Path(cfg.out) / "images", upscale=scale, progress=cfg.progress).folder
        gt = gt or hr_dir
    if not pred:
        raise InputError("give pred= (and gt=), or model= and dataset=")
    result = evaluate_folders(pred, gt, cfg.metrics, cfg.device, cfg.allow_missing, cfg.progress)
    paths = write_results(result, cfg.out)
    print(paths["md"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    unavailable = result["summary"]["unavailable"]
    if unavailable and cfg.strict:
        print(f"error (strict): unavailable metrics: {', '.join(unavailable)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
