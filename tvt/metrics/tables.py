"""Table-2-style comparison tables and side-by-side crop figures from evaluation outputs.

    summaries, note = load_for_comparison(["a/summary.json", "b/summary.json"])  # on the images all share
    table_markdown(summaries)                                                     # methods x metrics, best bold
    crop_figure([("0001", (x, y, w, h))], {"bicubic": dir1, "tvt": dir2, "hr": dir3}, "crops.png")
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from PIL import Image, ImageDraw

from ..errors import InputError
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
    return "\n".join(lines) + _recognizer_note(summaries, metrics)


def _recognizer_note(summaries: dict[str, dict], metrics: list[str]) -> str:
    """ACC/NED columns name their recognizer; scores of different recognizers are flagged as not comparable."""
    if not any(METRICS.get(m) is not None and METRICS[m].kind == "text" for m in metrics):
        return ""
    used = {n: s["recognizer"]["name"] for n, s in summaries.items() if isinstance(s.get("recognizer"), dict)}
    if len(set(used.values())) > 1:
        return ("\n\n**ACC/NED come from different recognizers and do not compare**: "
                + "; ".join(f"{n}: {r}" for n, r in used.items()))
    return f"\n\nACC/NED recognizer: {next(iter(used.values()))}" if used else ""


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


def load_for_comparison(paths: list[str | Path], names: list[str] | None = None) -> tuple[dict[str, dict], str]:
    """{method: summary} from evaluation folders' summary.json, restricted to the images every method was scored on.

    Ranking methods on different image sets is meaningless: when the sets differ, the means are recomputed from
    each folder's per_image.csv on the common images and the returned note says so; with no common image, or a
    per_image.csv missing (then the image sets cannot be shown to match), an InputError says why.
    """
    paths = [Path(p) for p in paths]
    names = names or [p.resolve().parent.name for p in paths]
    if len(names) != len(paths):
        raise InputError(f"{len(names)} names for {len(paths)} summaries")
    if len(set(names)) != len(names):
        raise InputError(f"method names must differ, got {names}: give --names")
    summaries, per_image = {}, {}
    for name, path in zip(names, paths):
        if not path.is_file():
            raise InputError(f"summary not found: {path}")
        try:
            summaries[name] = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise InputError(f"{path} is not an evaluation summary (JSON error: {err})") from None
        rows = path.with_name("per_image.csv")
        if rows.is_file():
            with rows.open(newline="") as f:
                per_image[name] = {r["name"]: r for r in csv.DictReader(f)}
    if len(per_image) == len(names):
        sets = {n: set(rows) for n, rows in per_image.items()}
        common = set.intersection(*sets.values())
        if not common:
            raise InputError("the evaluations share no image: " + "; ".join(f"{n}: {len(s)}" for n, s in sets.items()))
        if any(s != common for s in sets.values()):
            for n, s in summaries.items():
                columns = [k for k in next(iter(per_image[n].values())) if k != "name"]
                for m in columns:
                    s[m] = sum(float(per_image[n][i][m]) for i in common) / len(common)
                for m in set(METRICS) & set(s) - set(columns):  # folder-level (FID): not recomputable per image
                    s[m] = float("nan")
                s["num_images"] = len(common)
            return summaries, (f"compared on the {len(common)} images all evaluations share ("
                               + ", ".join(f"{n}: {len(s)}" for n, s in sets.items()) + ")")
        return summaries, ""
    # without every per_image.csv nothing shows which images a mean is over: equal counts can be disjoint sets
    missing = [str(path.with_name("per_image.csv")) for name, path in zip(names, paths) if name not in per_image]
    raise InputError(f"cannot show the evaluations scored the same images: {', '.join(missing)} missing "
                     "(scripts/eval.py writes it beside summary.json)")
