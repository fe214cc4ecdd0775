"""Reconstruction and latent alignment of VAEs (Table 1 protocol; the alignment columns are ours, tvt.metrics.vae).

    python scripts/eval_vae.py --vae runs/002-vae_stage2/export --d8 weights/sd21-base --data ${TVT_DATA}/RealSR/HR
    python scripts/eval_vae.py --vae tvt=latest:vae_stage2 --vae t1=latest:vae_t1 --d8 weights/sd21-base \
        --data data/RealSR/HR --num 20 --json eval/vae.json

--vae NAME=PATH names a row (default: the folder's name); PATH may be latest:<run_name> (under --runs).
PSNR and SSIM on Y (BT.601), no border crop, on center crops of --crop pixels.
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import MISSING

from tvt.errors import ConfigError, MissingWeightsError
from tvt.losses.perceptual import LPIPSLoss
from tvt.metrics.vae import evaluate_vae, load_eval_images, make_ssim_y
from tvt.models.vae import load_vae_d4, load_vae_d8
from tvt.train.runs import resolve_run_path
from tvt_scripts._cli import command

COLUMNS = ["psnr_y", "ssim_y", "lpips", "rel_l2", "cosine", "lin_r2", "psnr_y_d4dec_z8", "psnr_y_d8dec_z4",
           "psnr_y_d8dec_z8"]
log = logging.getLogger("eval_vae")


@dataclass
class EvalVAEConfig:
    vae: list = field(default_factory=list)  # VAE-D4 folders, NAME=PATH to name a row; PATH may be latest:<run_name>
    data: str = MISSING  # folder of HR images
    d8: Optional[str] = None  # SD 2.1 folder or hub id: adds VAE-D8 as a row and the alignment columns
    crop: int = 512  # center crop side
    num: Optional[int] = None  # the first N images only
    lpips_backbone: str = "pretrained"  # pretrained | random (no VGG weights: a pipeline check, not a metric)
    device: str = "cpu"
    runs: str = "runs"  # where latest:<run_name> looks
    json: Optional[str] = None  # also write the rows as JSON here


@command(EvalVAEConfig, aliases={"--lpips-backbone": "lpips_backbone"})
def main(cfg: EvalVAEConfig) -> int:
    if not cfg.vae:
        raise ConfigError("give at least one --vae PATH (or NAME=PATH)")
    images = load_eval_images(cfg.data, cfg.crop, cfg.num)
    try:
        lpips = LPIPSLoss("vgg", cfg.lpips_backbone).to(cfg.device)
    except MissingWeightsError as err:
        log.warning("LPIPS column left out: %s", err)
        lpips = None
    ssim = make_ssim_y()
    d8 = load_vae_d8(cfg.d8).to(cfg.device).eval() if cfg.d8 else None
    rows = {"vae_d8": evaluate_vae(d8, images, None, lpips, ssim)} if d8 is not None else {}
    for spec in cfg.vae:
        name, sep, path = str(spec).partition("=")
        if not sep:
            name, path = "", name
        path = resolve_run_path(path, cfg.runs)
        rows[name or _row_name(path)] = evaluate_vae(load_vae_d4(path).to(cfg.device).eval(), images, d8, lpips, ssim)
    print(f"{len(images)} images from {cfg.data}, {cfg.crop}x{cfg.crop} center crops; PSNR/SSIM on Y (BT.601)")
    print(f"{'vae':<24}" + "".join(f"{c:>16}" for c in COLUMNS))
    for name, r in rows.items():
        print(f"{name:<24}" + "".join(f"{r[c]:>16.4f}" if c in r else f"{'-':>16}" for c in COLUMNS))
    if cfg.json:
        Path(cfg.json).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.json).write_text(json.dumps(rows, indent=2))
        print(f"wrote {cfg.json}")
    return 0


def _row_name(path: str) -> str:
    """runs/002-vae_stage2/export -> 002-vae_stage2; any other folder -> its name."""
    p = Path(path)
    return p.parent.name if p.name == "export" else p.name


if __name__ == "__main__":
    sys.exit(main())
