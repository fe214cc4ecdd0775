"""Super-resolve a file, folder or glob of images with TVT, the OSEDiff architecture or bicubic.

    python scripts/infer.py -i LR_DIR -o OUT_DIR --model EXPORT_DIR [--upscale 4 --tile_size 192 --tile_overlap 64
        --color_fix adain --device cuda --dtype bf16 --seed 0 --overwrite]
    python scripts/infer.py -i LR_DIR -o OUT_DIR --model EXPORT_DIR --device cuda --dtype bf16 --batch_size 8 \
        --compile --channels_last [--bounded_tiles]     # the fast path (TVTPipeline.enable_fast_inference)

Outputs: OUT_DIR/<input stem>.png, written atomically (OUT_DIR may not be an input's folder, and is not left behind
empty). Exit code 0 when no image failed (skipped files do not count), 1 when one did, 2 on a setup error or when
the input holds no image (unless --allow_empty).
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import sys
from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import MISSING

from tvt.config import ranged
from tvt.inference import DTYPES, TVTPipeline, super_resolve_folder
from tvt.inference.fast import COMPILE_MODES, enable_fast_options
from tvt.inference.pipeline import PROCESS_SIZE
from tvt.inference.resize import check_upscale
from tvt.train.runs import resolve_run_path
from tvt_scripts._cli import command

CHOICES = {"color_fix": ("adain", "wavelet", "none"), "prompt_extractor": ("auto", "none"), "dtype": tuple(DTYPES),
           "compile_mode": COMPILE_MODES}
ALIASES = {"-i": "input", "-o": "output", "--align_method": "color_fix", "--align-method": "color_fix"}


@dataclass
class InferConfig:
    input: str = MISSING  # image file, folder or glob (-i, required)
    output: str = MISSING  # output folder (-o, required)
    model: str = MISSING  # export folder, latest:<run_name>, official release, SD 2.1-base (untrained), bicubic (required)
    runs: str = "runs"  # where latest:<run_name> looks
    base_model: Optional[str] = None  # SD 2.1-base folder/hub id (overrides the export's)
    vae_d4: Optional[str] = None  # VAE-D4 folder, only with an SD 2.1-base folder as --model
    upscale: float = 4.0  # output = input x upscale, 1 to 4 (the model restores bicubic x4 inputs)
    process_size: int = ranged(PROCESS_SIZE, min=0)  # shorter outputs are made at this size, then resized (official 512)
    tile_size: Optional[int] = ranged(None, min=0)  # latent tile in INPUT pixels (default: official 192 px at x4; 0: none)
    tile_overlap: Optional[int] = ranged(None, min=0)  # tile overlap in INPUT pixels
    vae_tile_size: Optional[int] = ranged(None, min=0)  # VAE tile in OUTPUT pixels (0: off)
    color_fix: str = "adain"  # adain | wavelet | none (alias --align_method)
    prompt: Optional[str] = None  # one prompt for every image (default: the model's, per image; '' for empty)
    prompt_extractor: str = "auto"  # auto: the tagger the model records (e.g. RAM + DAPE) | none: no tags
    ram_weights: Optional[str] = None  # ram_swin_large_14m.pth (overrides the model's path)
    dape_weights: Optional[str] = None  # DAPE.pth (overrides the model's path)
    device: str = "cuda" if torch.cuda.is_available() else "cpu"  # default: cuda when available
    dtype: str = "fp32"  # fp32 | fp16 | bf16 (fp16 keeps the VAE in fp32: no NaN/black images)
    seed: int = 0  # seeds every image's VAE posterior sample
    overwrite: bool = False  # replace existing outputs
    allow_empty: bool = False  # an input without images is no error (exit 0)
    batch_size: int = ranged(1, min=1)  # images of one size per model call (same outputs up to float rounding)
    compile: bool = False  # fast path: torch.compile of the UNet and VAE (the first image of each size compiles)
    compile_mode: str = "auto"  # auto (CUDA: max-autotune, CUDA graphs for fixed shapes) or a torch.compile mode
    channels_last: bool = False  # fast path: channels_last memory format
    bounded_tiles: bool = False  # fast path: 384/64 output-px latent tiles for large images (fewer UNet MACs)

    def __post_init__(self):
        for key, choices in CHOICES.items():
            if getattr(self, key) not in choices:
                raise ValueError(f"--{key} must be one of {', '.join(choices)}, got '{getattr(self, key)}'")
        check_upscale(self.upscale)


@command(InferConfig, aliases=ALIASES)
def main(cfg: InferConfig) -> int:
    model = resolve_run_path(cfg.model, cfg.runs)  # latest:<run_name> -> that run's export
    pipe = TVTPipeline.from_pretrained(model, device=cfg.device, dtype=cfg.dtype, base_model=cfg.base_model,
                                       vae_d4=cfg.vae_d4, ram_weights=cfg.ram_weights, dape_weights=cfg.dape_weights,
                                       prompt_extractor=None if cfg.prompt_extractor == "none" else "auto",
                                       process_size=cfg.process_size)
    enable_fast_options(pipe, cfg.compile, cfg.compile_mode, cfg.channels_last, cfg.bounded_tiles)
    torch.manual_seed(cfg.seed)
    res = super_resolve_folder(pipe, cfg.input, cfg.output, upscale=cfg.upscale, overwrite=cfg.overwrite, seed=cfg.seed,
                               allow_empty=cfg.allow_empty, batch_size=cfg.batch_size, prompt=cfg.prompt,
                               tile_size=cfg.tile_size, tile_overlap=cfg.tile_overlap, vae_tile_size=cfg.vae_tile_size,
                               color_fix=cfg.color_fix)
    per = f"{res.seconds / len(res.written):.3f} s/image" if res.written else "n/a s/image"
    print(f"done {len(res.written)}, skipped {len(res.skipped)}, failed {len(res.failed)}, {per} "
          f"({pipe.architecture}, {cfg.device}, {cfg.dtype}): {res.folder}")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())
