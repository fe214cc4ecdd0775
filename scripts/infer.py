"""Super-resolve a file, folder or glob of images with TVT, the OSEDiff architecture or bicubic.

    python scripts/infer.py -i LR_DIR -o OUT_DIR --model EXPORT_DIR [--upscale 4 --tile-size 192 --tile-overlap 64
        --color-fix adain --prompt "" --device cuda --dtype bf16 --seed 0 --overwrite]

--model: a TVT export folder (tvt.export), an official TVT release (converted on load), an SD 2.1-base folder or
hub id (untrained; with --vae-d4 for TVT), or "bicubic". Outputs: OUT_DIR/<input stem>.png, written atomically.
Exit code 0 when no image failed (skipped files do not count), 1 when one did, 2 on a setup error.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from tvt.io import ImageReadError, is_image_file, list_images, save_image
from tvt.models.loading import MissingWeightsError
from tvt.pipeline import ImageSizeError, TVTPipeline

log = logging.getLogger("tvt.infer")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-i", "--input", required=True, help="image file, folder or glob")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--model", required=True, help='export folder, official TVT weights, SD 2.1 folder/hub id, or "bicubic"')
    p.add_argument("--base-model", "--base_model", default=None, help="SD 2.1-base folder/hub id (overrides the export's)")
    p.add_argument("--vae-d4", "--vae_d4", default=None, help="VAE-D4 folder, only with an SD 2.1 folder as --model")
    p.add_argument("--upscale", type=float, default=4)
    p.add_argument("--tile-size", "--tile_size", type=int, default=None,
                   help="latent tile in INPUT pixels (default: the official tiles, 192 px at x4; 0 = no tiling)")
    p.add_argument("--tile-overlap", "--tile_overlap", type=int, default=None, help="tile overlap in INPUT pixels")
    p.add_argument("--vae-tile-size", "--vae_tile_size", type=int, default=None, help="VAE tile in OUTPUT pixels (0 = off)")
    p.add_argument("--color-fix", "--color_fix", "--align-method", "--align_method", default="adain",
                   choices=["adain", "wavelet", "none"])
    p.add_argument("--prompt", default=None, help="text prompt for every image (default: the model's, per image)")
    p.add_argument("--prompt-extractor", "--prompt_extractor", default="auto", choices=["auto", "none"],
                   help="auto: the tagger the model was trained for (e.g. RAM + DAPE); none: no tags")
    p.add_argument("--ram-weights", "--ram_weights", default=None, help="ram_swin_large_14m.pth (overrides the model's path)")
    p.add_argument("--dape-weights", "--dape_weights", default=None, help="DAPE.pth (overrides the model's path)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="fp32", choices=sorted(DTYPES), help="fp16 keeps the VAE in fp32 (no NaN/black images)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return p.parse_args(argv)


def _inputs(source: str) -> list[Path]:
    """Image files of ``source``; other files in a folder are skipped with a warning."""
    files = list_images(source)
    if Path(source).is_dir():
        others = sorted(p.name for p in Path(source).iterdir() if p.is_file() and not is_image_file(p))
        if others:
            log.warning("skipping %d non-image file(s): %s", len(others), ", ".join(others[:5]) + (" ..." if len(others) > 5 else ""))
    elif Path(source).is_file() and not is_image_file(source):
        log.warning("skipping %s: not an image file", source)
        return []
    return files


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        files = _inputs(args.input)
    except FileNotFoundError as err:
        log.error("%s", err)
        return 2
    if not files:
        log.warning("no images found in %s", args.input)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        pipe = TVTPipeline.from_pretrained(args.model, device=args.device, dtype=DTYPES[args.dtype],
                                           base_model=args.base_model, vae_d4=args.vae_d4,
                                           prompt_extractor=None if args.prompt_extractor == "none" else "auto",
                                           ram_weights=args.ram_weights, dape_weights=args.dape_weights)
    except (MissingWeightsError, NotImplementedError, ImportError, ValueError, OSError) as err:
        log.error("cannot load --model %s: %s", args.model, err)
        return 2
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    torch.manual_seed(args.seed)
    kwargs = {} if pipe.architecture == "bicubic" else dict(
        prompt=args.prompt, tile_size=args.tile_size, tile_overlap=args.tile_overlap, vae_tile_size=args.vae_tile_size,
        color_fix=None if args.color_fix == "none" else args.color_fix, generator=gen)

    done = skipped = failed = 0
    seconds = 0.0
    claimed: dict[Path, Path] = {}
    for path in tqdm(files, desc="infer", unit="img"):
        target = out_dir / f"{path.stem}.png"
        if target in claimed:
            log.error("%s: output name %s already used by %s; rename one of them", path, target.name, claimed[target].name)
            failed += 1
            continue
        claimed[target] = path
        if target.exists() and not args.overwrite:
            log.warning("%s exists, skipping (use --overwrite)", target)
            skipped += 1
            continue
        try:
            t0 = time.perf_counter()
            sr = pipe(path, upscale=args.upscale, **kwargs).images[0]
            save_image(sr, target)
            seconds += time.perf_counter() - t0
            done += 1
        except (ImageReadError, ImageSizeError, FloatingPointError, OSError, ValueError) as err:
            log.error("%s: %s", path.name, err)
            failed += 1
    per = f"{seconds / done:.3f} s/image" if done else "n/a s/image"
    print(f"done {done}, skipped {skipped}, failed {failed}, {per} ({pipe.architecture}, {args.device}, {args.dtype})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
