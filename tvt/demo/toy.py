"""The toy recipe: the whole method on the bundled samples (data/samples), small enough for a CPU in minutes.

    teacher  a tiny VAE-D8 trained from scratch, standing in for SD 2.1's VAE    configs/tiny/vae_teacher.yaml
    stage 1  the VAE-D4 decoder on the teacher's latents of up2(x)              configs/tiny/vae_stage1.yaml
    stage 2  the VAE-D4 encoder under that frozen decoder                       configs/tiny/vae_stage2.yaml
    ISR      one-step training of the CE-UNet on Real-ESRGAN-degraded crops     configs/tiny/isr.yaml

The SD-shaped UNet and text encoder are tiny and random (tvt.testing.make_tiny_sd): no weights are needed, so
every number a toy run gives checks the machinery, not the paper's quality. The command is ``scripts/toy.py``;
``make demo`` (scripts/demo.py) runs it and reports on it (tvt.demo.report).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..config import load_config
from ..errors import InputError
from ..io import atomic_dir
from ..roots import samples_root
from ..testing import make_tiny_sd
from ..train.isr import ISRStage
from ..train.trainer import Trainer
from ..train.vae_transfer import VAETransferStage

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny"  # the tiny configs of the source checkout
VAE_STAGES = ("teacher", "stage1", "stage2")
SHIPPED_LOG_EVERY = 10  # shipped loss logs keep every 10th step
SHIPPED_VAES = samples_root() / "toy"  # the toy VAEs bundled with the repository (make demo starts from them)
SHIPPED_README = """# Toy VAEs (trained, tiny)

The toy VAE-D8 teacher (`vae_d8/`, SD's VAE-D8 layout at 16/32/32/32 channels) and the VAE-D4 of Transfer VAE
Training (`vae_d4/`, 16/32/32; stage 1 on the teacher's latents, then stage 2) that `make demo` starts from, with
each run's loss log (`runs/<stage>/metrics.jsonl`, every 10th step). Made by:

    {command}

on the DRealSR test HR images (RealSR, which the demo evaluates on, is never trained on). Tiny and trained on a
CPU: they check the machinery, not the paper's quality. `python scripts/demo.py vaes=null` trains them live.
"""


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
    vae_d4: Path  # the Transfer VAE Training VAE-D4 (stage 2's export)
    runs: dict[str, Path] = field(default_factory=dict)  # stage -> run folder (each has metrics.jsonl; export/)
    vaes_from: Optional[Path] = None  # the shipped toy VAEs used instead of training them, if any

    @property
    def model(self) -> Path:
        return self.runs["isr"] / "export"


def run_stage(stage_cls, config: Path, overrides: list[str]) -> Path:
    """Train one stage from a YAML config + overrides; returns its run folder."""
    return Trainer(stage_cls(load_config(stage_cls.Config, ["--config", str(config), *overrides]))).fit()


def train_toy(work: Path, steps: ToySteps = ToySteps(), overrides: dict[str, list[str]] | None = None,
              isr: bool = True, vaes: Path | None = None) -> ToyRun:
    """Teacher -> stage 1 -> stage 2 -> ISR: runs in ``work/runs``, the tiny SD folder (its vae/ the trained teacher)
    in ``work/runs/tiny_sd``, where the tiny configs look. ``overrides`` adds key=value per stage name; ``isr``
    False stops after the VAEs. ``vaes``: a folder written by ``ship_vaes`` (the bundled one: SHIPPED_VAES): its
    teacher and VAE-D4 are used instead of training them, and its runs' loss curves come along."""
    overrides = overrides or {}

    def extra(stage: str) -> list[str]:
        n = getattr(steps, stage)
        return [f"train.output_dir={work / 'runs'}", *([f"train.max_steps={n}"] if n else []), *overrides.get(stage, [])]

    sd = make_tiny_sd(work / "runs" / "tiny_sd")
    shutil.rmtree(sd / "vae")
    with_sd = [f"sd_model={sd}"]
    if vaes is not None:
        if not (vaes / "vae_d8").is_dir() or not (vaes / "vae_d4").is_dir():
            raise InputError(f"{vaes} holds no toy VAEs (vae_d8/, vae_d4/): write them with `python scripts/toy.py ship=...`")
        shutil.copytree(vaes / "vae_d8", sd / "vae")
        toy = ToyRun(sd=sd, vae_d4=vaes / "vae_d4", runs={s: vaes / "runs" / s for s in VAE_STAGES}, vaes_from=vaes)
    else:
        teacher = run_stage(VAETransferStage, TINY / "vae_teacher.yaml", extra("teacher"))
        shutil.copytree(teacher / "export", sd / "vae")  # the trained teacher is the SD folder's VAE-D8
        stage1 = run_stage(VAETransferStage, TINY / "vae_stage1.yaml", with_sd + extra("stage1"))
        stage2 = run_stage(VAETransferStage, TINY / "vae_stage2.yaml",
                           with_sd + [f"decoder_from={stage1 / 'export'}"] + extra("stage2"))
        toy = ToyRun(sd=sd, vae_d4=stage2 / "export", runs={"teacher": teacher, "stage1": stage1, "stage2": stage2})
    if isr:
        toy.runs["isr"] = run_stage(ISRStage, TINY / "isr.yaml", with_sd + [f"vae_d4={toy.vae_d4}"] + extra("isr"))
    return toy


def ship_vaes(toy: ToyRun, dest: Path, command_line: str) -> Path:
    """Write the toy's VAEs (teacher as vae_d8/, VAE-D4 as vae_d4/), each VAE run's loss log (runs/<stage>/
    metrics.jsonl, every SHIPPED_LOG_EVERY-th step) and a README with the command that made them, to ``dest``:
    what ``train_toy(vaes=dest)`` reads. (No config.yaml: it holds absolute paths; the command says everything.)"""
    with atomic_dir(dest) as tmp:
        shutil.copytree(toy.sd / "vae", tmp / "vae_d8")
        shutil.copytree(toy.vae_d4, tmp / "vae_d4")
        for stage in VAE_STAGES:
            (tmp / "runs" / stage).mkdir(parents=True)
            rows = (toy.runs[stage] / "metrics.jsonl").read_text().splitlines()
            kept = [r for i, r in enumerate(rows)  # enough for the curves, and the last step
                    if json.loads(r)["step"] % SHIPPED_LOG_EVERY == 0 or i == len(rows) - 1]
            (tmp / "runs" / stage / "metrics.jsonl").write_text("\n".join(kept) + "\n")
        (tmp / "README.md").write_text(SHIPPED_README.format(command=command_line))
    return dest


def loss_curve(run: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of one logged loss of a run."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r[key]) for r in rows if key in r]
