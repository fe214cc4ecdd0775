"""Bicubic x4 baselines on RealSR and DRealSR with every metric computable offline, through scripts/eval.py.

    python benchmarks/baselines.py [--out-dir runs/baselines] [--datasets RealSR --datasets DRealSR] [--reuse]

Writes benchmarks/results/baselines.md (Table-2-style, machine info, protocol, unavailable metrics + reasons).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from _machine import machine

from tvt_scripts._cli import command

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
METRICS = "psnr,ssim,fsim,lpips,dists,afine-fr,clipiqa,musiq,maniqa,niqe,topiq_nr,qalign,hyperiqa,afine-nr,fid"


@dataclass
class BaselinesConfig:
    out_dir: str = str(REPO / "runs" / "baselines")
    datasets: list = field(default_factory=lambda: ["RealSR", "DRealSR"])
    metrics: str = METRICS
    reuse: bool = False  # re-render from existing OUT/summary.json files
    result: str = str(REPO / "benchmarks" / "results" / "baselines.md")


@command(BaselinesConfig)
def main(args: BaselinesConfig) -> int:
    import torch

    from tvt.metrics import get_spec
    from tvt.metrics.tables import table_markdown

    summaries, seconds = {}, {}
    for name in args.datasets:
        out = Path(args.out_dir) / f"bicubic_{name}"
        t0 = time.time()
        if args.reuse and (out / "summary.json").is_file():
            summaries[name], seconds[name] = json.loads((out / "summary.json").read_text()), float("nan")
            continue
        cmd = [sys.executable, str(REPO / "scripts" / "eval.py"), "--model", "bicubic", "--dataset", name,
               "--metrics", args.metrics, "--out", str(out), "--no-progress"]
        rc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL).returncode
        if rc != 0:
            print(f"eval failed on {name} (exit {rc})", file=sys.stderr)
            return rc
        seconds[name] = time.time() - t0
        summaries[name] = json.loads((out / "summary.json").read_text())

    first = next(iter(summaries.values()))
    lines = ["# Bicubic x4 baselines (Table 2 protocol)", "",
             f"Produced by `python benchmarks/baselines.py` (runs `scripts/eval.py --model bicubic --dataset NAME`), "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
             f"Machine: {machine()} (cores shared with other jobs); "
             f"Python {platform.python_version()}, torch {torch.__version__}, pyiqa {first['pyiqa_version']}.", "",
             "Bicubic: PIL `Image.resize(..., BICUBIC)` of the 128x128 LR to 512x512, compared with the 512x512 HR.", ""]
    for name, s in summaries.items():
        wall = "" if seconds[name] != seconds[name] else f", {seconds[name]:.0f} s wall incl. SR and metric set-up"
        lines += [f"## {name} ({s['num_images']} images{wall})", "",
                  table_markdown({"Bicubic": s}, mark_best=False), ""]
    lines += ["## Protocol", ""] + [f"- **{m}**: {get_spec(m).protocol}" for m in first["protocol"]]
    lines += ["", "## Unavailable here (no internet: pyiqa weights absent, or an optional package missing)", ""]
    reasons = {m: r for s in summaries.values() for m, r in s["unavailable"].items()}  # the last run's wording
    lines += [f"- **{m}**: {r}" for m, r in reasons.items()] or ["- none"]
    ok = [m for m in first["protocol"] if m not in reasons]
    lines += ["", f"Computable offline here: {', '.join(ok) or 'none'}.",
              "Re-run: `python benchmarks/baselines.py` (about 5 min on this machine); `--reuse` re-renders from runs/baselines."]
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text("\n".join(lines) + "\n")
    print(Path(args.result).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
