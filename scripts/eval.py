"""Evaluate SR images with the Table 2 protocol (pyiqa; PSNR/SSIM on Y of YCbCr), or super-resolve a dataset first.

    python scripts/eval.py --pred out/sr --gt data/RealSR/HR --metrics psnr,ssim,fsim --out eval/tvt-realsr
    python scripts/eval.py --model latest:isr --dataset RealSR --out eval/tvt-realsr     # the newest finished runs/NNN-isr
    python scripts/eval.py --model bicubic --dataset DRealSR --out eval/bicubic-drealsr
    python scripts/eval.py --model latest:stisr --dataset RealCE --out eval/tvt-realce   # Table 3 (+ OUT/per_line.csv)
    python scripts/eval.py --model runs/003-isr/export --dataset RealSR --out eval/tvt-realsr --device cuda \
        --dtype bf16 --batch_size 8 --compile --channels_last     # the fast path, as scripts/infer.py

Writes OUT/per_image.csv, OUT/summary.json (the protocol written in) and OUT/summary.md; with --model also the
SR images in OUT/images. Datasets are found under the data root (TVT_DATA; scripts/prepare_data.py). Exit 0, or 2
on bad input, or 1 under --strict when a metric was unavailable (its weights absent).
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import MISSING

from tvt.config import ranged
from tvt.data.catalog import annos_dir, paired_dirs
from tvt.errors import InputError
from tvt.metrics.evaluate import evaluate_folders, write_results
from tvt.metrics.registry import TABLE3_METRICS
from tvt.train.runs import resolve_run_path
from tvt_scripts._cli import command


@dataclass
class EvalConfig:
    out: str = MISSING  # output folder (required)
    pred: Optional[str] = None  # folder of SR images
    gt: Optional[str] = None  # folder of GT images (full-reference metrics)
    model: Optional[str] = None  # bicubic, an export folder, latest:<run_name> or the official release: super-resolve --dataset first
    runs: str = "runs"  # where latest:<run_name> looks
    dataset: Optional[str] = None  # RealSR | DRealSR | DIV2K-val | RealCE, under the data root
    data_root: Optional[str] = None  # folder holding the datasets (default: TVT_DATA, else data/ of the checkout)
    metrics: Optional[str] = None  # comma list (default: Table 2's; Table 3's with annotations; no-reference ones only without gt)
    annos: Optional[str] = None  # RealCE annotations by image stem, for ocr_acc/ocr_ned (default: the dataset's)
    recognizer: str = "ppocr"  # ocr_acc/ocr_ned: ppocr (PP-OCRv4, offline) | realce-crnn (Real-CE's pair, your weights)
    device: str = "cpu"
    # with model=: as scripts/infer.py's keys of the same names
    dtype: str = "fp32"  # fp32 | fp16 | bf16
    batch_size: int = ranged(1, min=1)  # images of one size per model call
    compile: bool = False  # fast path: torch.compile of the UNet and VAE
    compile_mode: str = "auto"  # auto or a torch.compile mode
    channels_last: bool = False  # fast path: channels_last memory format
    bounded_tiles: bool = False  # fast path: bounded latent tiles for large images
    allow_missing: bool = False  # score the matching images, list the others (default: mismatches are an error)
    strict: bool = False  # exit 1 when a metric is unavailable
    progress: bool = True


@command(EvalConfig)
def main(cfg: EvalConfig) -> int:
    pred, gt, annos = cfg.pred, cfg.gt, cfg.annos
    if cfg.model or cfg.dataset:
        if not (cfg.model and cfg.dataset):
            raise InputError("model= and dataset= go together")
        from tvt.inference import TVTPipeline, super_resolve_folder
        from tvt.inference.fast import enable_fast_options

        lr_dir, hr_dir, scale = paired_dirs(cfg.dataset, cfg.data_root)
        annos = annos or annos_dir(cfg.dataset, cfg.data_root)
        pipe = TVTPipeline.from_pretrained(resolve_run_path(cfg.model, cfg.runs), device=cfg.device, dtype=cfg.dtype)
        enable_fast_options(pipe, cfg.compile, cfg.compile_mode, cfg.channels_last, cfg.bounded_tiles)
        pred = super_resolve_folder(pipe, lr_dir, Path(cfg.out) / "images", upscale=scale, progress=cfg.progress,
                                    batch_size=cfg.batch_size).folder
        gt = gt or hr_dir
    if not pred:
        raise InputError("give pred= (and gt=), or model= and dataset=")
    metrics = cfg.metrics or (",".join(TABLE3_METRICS) if annos else None)
    result = evaluate_folders(pred, gt, metrics, cfg.device, cfg.allow_missing, cfg.progress, annos, cfg.recognizer)
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
