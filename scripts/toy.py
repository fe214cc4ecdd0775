"""The toy recipe: the whole method on the bundled samples (data/samples), small enough for a CPU in minutes.

    teacher  a tiny VAE-D8 trained from scratch, standing in for SD 2.1's VAE    configs/tiny/vae_teacher.yaml
    stage 1  the VAE-D4 decoder on the teacher's latents of up2(x)              configs/tiny/vae_stage1.yaml
    stage 2  the VAE-D4 encoder under that frozen decoder                       configs/tiny/vae_stage2.yaml
    ISR      one-step training of the CE-UNet on Real-ESRGAN-degraded crops     configs/tiny/isr.yaml

The SD-shaped UNet and text encoder are tiny and random (tvt.testing.make_tiny_sd): no weights are needed, so
every number a toy run gives checks the machinery, not the paper's quality.

    python scripts/toy.py                       # runs/tiny_sd and runs/NNN-tiny_* in the current folder
    python scripts/toy.py work=/tmp/toy steps.isr=400

Afterwards each tiny config runs on its own from the same folder (it reads runs/tiny_sd and latest:tiny_*), e.g.
``python scripts/train_isr.py --config configs/tiny/isr.yaml train.max_steps=400``.
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from tvt.config import load_config
from tvt.testing import make_tiny_sd
from tvt.train.core import Trainer
from tvt.train.isr import ISRStage
from tvt.train.vae_transfer import VAETransferStage
from tvt_scripts._cli import command

TINY = Path(__file__).resolve().parents[1] / "configs" / "tiny"


@dataclass
class ToySteps:
    """Optimizer steps of each toy stage (None: the tiny config's)."""

    teacher: Optional[int] = None
    stage1: Optional[int] = None
    stage2: Optional[int] = None
    isr: Optional[int] = None


@dataclass
class ToyRun:
    sd: Path  # the tiny SD folder, its vae/ the trained teacher
    runs: dict[str, Path] = field(default_factory=dict)  # stage -> run folder (each has export/, metrics.jsonl)

    @property
    def vae_d4(self) -> Path:
        return self.runs["stage2"] / "export"

    @property
    def model(self) -> Path:
        return self.runs["isr"] / "export"


def run_stage(stage_cls, config: Path, overrides: list[str]) -> Path:
    """Train one stage from a YAML config + overrides; returns its run folder."""
    return Trainer(stage_cls(load_config(stage_cls.Config, ["--config", str(config), *overrides]))).fit()


def train_toy(work: Path, steps: ToySteps = ToySteps(), overrides: dict[str, list[str]] | None = None,
              isr: bool = True) -> ToyRun:
    """Teacher -> stage 1 -> stage 2 -> ISR: runs in ``work/runs``, the tiny SD folder (its vae/ the trained teacher)
    in ``work/runs/tiny_sd``, where the tiny configs look. ``overrides`` adds key=value per stage name; ``isr``
    False stops after the VAEs."""
    overrides = overrides or {}

    def extra(stage: str) -> list[str]:
        n = getattr(steps, stage)
        return [f"train.output_dir={work / 'runs'}", *([f"train.max_steps={n}"] if n else []), *overrides.get(stage, [])]

    sd = make_tiny_sd(work / "runs" / "tiny_sd")
    toy = ToyRun(sd=sd)
    toy.runs["teacher"] = run_stage(VAETransferStage, TINY / "vae_teacher.yaml", extra("teacher"))
    shutil.rmtree(sd / "vae")
    shutil.copytree(toy.runs["teacher"] / "export", sd / "vae")  # the trained teacher is the SD folder's VAE-D8
    with_sd = [f"sd_model={sd}"]
    toy.runs["stage1"] = run_stage(VAETransferStage, TINY / "vae_stage1.yaml", with_sd + extra("stage1"))
    toy.runs["stage2"] = run_stage(VAETransferStage, TINY / "vae_stage2.yaml",
                                   with_sd + [f"decoder_from={toy.runs['stage1'] / 'export'}"] + extra("stage2"))
    if isr:
        toy.runs["isr"] = run_stage(ISRStage, TINY / "isr.yaml", with_sd + [f"vae_d4={toy.vae_d4}"] + extra("isr"))
    return toy


def loss_curve(run: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of one logged loss of a run."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r[key]) for r in rows if key in r]


@dataclass
class ToyConfig:
    work: str = "."  # the toy runs go to work/runs, the tiny SD folder to work/runs/tiny_sd
    steps: ToySteps = field(default_factory=ToySteps)


@command(ToyConfig)
def main(cfg: ToyConfig) -> int:
    toy = train_toy(Path(cfg.work), cfg.steps)
    print("toy runs:\n" + "\n".join(f"  {name:8s} {run}" for name, run in toy.runs.items()))
    print(f"toy model (an export TVTPipeline.from_pretrained loads): {toy.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
