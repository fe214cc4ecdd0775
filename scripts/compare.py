"""Compare evaluations side by side (Table 2 style) on the images they share, and/or draw a crop figure.

    python scripts/compare.py eval/bicubic/summary.json eval/tvt/summary.json --names Bicubic,TVT --out table.md
    python scripts/compare.py --crops Canon_004_LR4:128,128,128,128 --dirs bicubic=eval/bicubic/images \\
        --dirs tvt=eval/tvt/images --dirs hr=data/RealSR/HR --figure crops.png
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tvt.errors import InputError
from tvt.metrics.tables import crop_figure, load_for_comparison, table_markdown

from tvt_scripts._cli import command


@dataclass
class CompareConfig:
    summaries: list = field(default_factory=list)  # summary.json files written by scripts/eval.py (positional)
    names: Optional[str] = None  # comma list of method names (default: each summary's folder name)
    metrics: Optional[str] = None  # comma list of columns (default: every metric present)
    out: Optional[str] = None  # markdown file for the table (default: print only)
    crops: list = field(default_factory=list)  # NAME:x,y,w,h boxes of the crop figure (coordinates of the largest image)
    dirs: list = field(default_factory=list)  # label=FOLDER columns of the crop figure
    figure: Optional[str] = None  # PNG of the crop figure


@command(CompareConfig, positional="summaries")
def main(cfg: CompareConfig) -> int:
    if not cfg.summaries and not cfg.crops:
        raise InputError("give summary.json files and/or crops= with dirs= and figure=")
    if cfg.summaries:
        summaries, note = load_for_comparison(cfg.summaries, cfg.names.split(",") if cfg.names else None)
        table = table_markdown(summaries, cfg.metrics.split(",") if cfg.metrics else None) + (f"\n\n{note}" if note else "")
        print(table)
        if cfg.out:
            Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.out).write_text(table + "\n")
            print(f"wrote {cfg.out}")
    if cfg.crops:
        if not (cfg.dirs and cfg.figure):
            raise InputError("crops need dirs=[label=FOLDER,...] and figure=PATH.png")
        boxes = [_crop(c) for c in cfg.crops]
        print(f"wrote {crop_figure(boxes, dict(d.split('=', 1) for d in cfg.dirs), cfg.figure)}")
    return 0


def _crop(text: str) -> tuple[str, tuple[int, int, int, int]]:
    try:
        stem, box = text.rsplit(":", 1)
        x, y, w, h = (int(v) for v in box.split(","))
    except ValueError:
        raise InputError(f"a crop is NAME:x,y,w,h, got '{text}'") from None
    return stem, (x, y, w, h)


if __name__ == "__main__":
    sys.exit(main())
