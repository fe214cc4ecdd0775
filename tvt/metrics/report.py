"""Table-2-style comparison tables and side-by-side crop figures from eval outputs.

    table_markdown({"Bicubic": json.load(...), "TVT": json.load(...)})   # methods x metrics, best bold
    crop_figure([("0001", (x, y, w, h))], {"bicubic": dir1, "tvt": dir2, "hr": dir3}, "crops.png")
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from PIL import Image, ImageDraw

from ..io import list_images, read_image
from .registry import METRICS, lower_better


def _is_lower_better(metric: str, summaries: dict[str, dict]) -> bool:
    for s in summaries.values():
        if metric in s.get("lower_better", {}):
            return bool(s["lower_better"][metric])
    return lower_better(metric) if metric in METRICS else False


def table_markdown(summaries: dict[str, dict], metrics: list[str] | None = None, mark_best: bool = True,
                   digits: dict[str, int] | None = None) -> str:
    """Methods (rows) x metrics (columns) with ↑/↓ in the header; best **bold**, second <u>underlined</u>.

    ``summaries``: name -> summary.json dict (metric -> mean). Missing/unavailable values print as "n/a".
    """
    if metrics is None:
        present = {k for s in summaries.values() for k in s} | {k for s in summaries.values() for k in s.get("unavailable", {})}
        metrics = [m for m in METRICS if m in present]
    digits = {"psnr": 2, "fid": 2, "niqe": 4, "musiq": 2, **(digits or {})}
    label = lambda m: METRICS[m].label if m in METRICS else m.upper()  # noqa: E731
    header = ["Method"] + [f"{label(m)}{'↓' if _is_lower_better(m, summaries) else '↑'}" for m in metrics]
    cells = {name: [] for name in summaries}
    for m in metrics:
        values = {n: s.get(m) for n, s in summaries.items()}
        valid = {n: v for n, v in values.items() if isinstance(v, (int, float)) and not math.isnan(v)}
        ranked = sorted(set(valid.values()), reverse=not _is_lower_better(m, summaries))
        for n, v in values.items():
            if n not in valid:
                cells[n].append("n/a")
                continue
            text = f"{v:.{digits.get(m, 4)}f}"
            if mark_best and len(valid) > 1 and v == ranked[0]:
                text = f"**{text}**"
            elif mark_best and len(ranked) > 2 and v == ranked[1]:
                text = f"<u>{text}</u>"
            cells[n].append(text)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [f"| {n} | " + " | ".join(c) + " |" for n, c in cells.items()]
    return "\n".join(lines)


def _find(folder: str | Path, stem: str) -> Path:
    for p in list_images(folder):
        if p.stem == stem:
            return p
    raise FileNotFoundError(f"no image with stem '{stem}' in {folder}")


def crop_figure(crops: list[tuple[str, tuple[int, int, int, int]]], dirs: dict[str, str | Path], out: str | Path,
                tile: int = 256) -> Path:
    """A PNG grid: one row per (image stem, (x, y, w, h)), one column per labelled folder.

    The box is in the coordinates of the largest image of the row; smaller images (e.g. LR) are cropped at the
    scaled box. Crops are shown at ``tile`` pixels wide with nearest-neighbour zoom (no smoothing of details).
    """
    label_h, pad = 18, 4
    rows = []
    for stem, (x, y, w, h) in crops:
        images = {label: read_image(_find(d, stem)) for label, d in dirs.items()}
        ref_w = max(im.width for im in images.values())
        row = []
        for im in images.values():
            s = im.width / ref_w
            box = (round(x * s), round(y * s), round((x + w) * s), round((y + h) * s))
            if box[2] > im.width or box[3] > im.height or w <= 0 or h <= 0:
                raise ValueError(f"crop {x},{y},{w},{h} outside image '{stem}' ({im.width}x{im.height} after scaling)")
            row.append(im.crop(box).resize((tile, max(1, round(tile * h / w))), Image.NEAREST))
        rows.append(row)
    width = len(dirs) * (tile + pad) + pad
    height = sum(r[0].height + label_h + pad for r in rows) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    top = pad
    for (stem, _), row in zip(crops, rows):
        for i, (label, crop) in enumerate(zip(dirs, row)):
            left = pad + i * (tile + pad)
            draw.text((left, top + 2), f"{label} ({stem})", fill="black")
            canvas.paste(crop, (left, top + label_h))
        top += row[0].height + label_h + pad
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


def _parse_crop(text: str) -> tuple[str, tuple[int, int, int, int]]:
    try:
        stem, box = text.rsplit(":", 1)
        x, y, w, h = (int(v) for v in box.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--crops expects NAME:x,y,w,h, got '{text}'") from None
    return stem, (x, y, w, h)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Compare eval summaries (Table 2 style) and/or make a crop figure.")
    ap.add_argument("summaries", nargs="*", help="summary.json files from scripts/eval.py")
    ap.add_argument("--names", help="comma list of method names (default: parent folder names)")
    ap.add_argument("--metrics", help="comma list of columns (default: all present)")
    ap.add_argument("--out", help="markdown file for the table (default: print)")
    ap.add_argument("--crops", nargs="+", type=_parse_crop, help="IMG_NAME:x,y,w,h ...")
    ap.add_argument("--dirs", nargs="+", help="label=DIR ... (columns of the crop figure)")
    ap.add_argument("--figure", help="PNG path of the crop figure")
    args = ap.parse_args(argv)
    if not args.summaries and not args.crops:
        ap.error("give summary.json files and/or --crops")
    if args.summaries:
        names = args.names.split(",") if args.names else [Path(p).resolve().parent.name for p in args.summaries]
        if len(names) != len(args.summaries):
            ap.error(f"{len(names)} names for {len(args.summaries)} summaries")
        summaries = {n: json.loads(Path(p).read_text()) for n, p in zip(names, args.summaries)}
        table = table_markdown(summaries, args.metrics.split(",") if args.metrics else None)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(table + "\n")
        print(table)
    if args.crops:
        if not (args.dirs and args.figure):
            ap.error("--crops needs --dirs label=DIR ... and --figure out.png")
        dirs = dict(d.split("=", 1) for d in args.dirs)
        print(crop_figure(args.crops, dirs, args.figure))
    return 0
