"""The training settings every stage shares (its ``train:`` section): steps, batch, optimizer, precision,
logging, checkpoints, resume. Steps are OPTIMIZER steps, never micro-batches."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..config import ranged


@dataclass
class TrainConfig:
    output_dir: str = "runs"
    run_name: str = "run"
    seed: int = 0
    max_steps: int = ranged(1000, min=1)  # optimizer steps
    batch_size: int = ranged(4, min=1)  # per process, per micro-batch
    grad_accum: int = ranged(1, min=1)
    mixed_precision: str = "no"  # no | fp16 | bf16
    gradient_checkpointing: bool = False
    lr: float = ranged(1e-4, min=0)
    scale_lr: bool = False  # LDM main.py --scale_lr: optimizer lr = lr x batch_size x processes x grad_accum
    lr_scheduler: str = "constant_with_warmup"
    lr_warmup_steps: int = ranged(0, min=0)
    adam_beta1: float = ranged(0.9, min=0, max=1)
    adam_beta2: float = ranged(0.999, min=0, max=1)
    weight_decay: float = ranged(0.0, min=0)
    use_8bit_adam: bool = False
    max_grad_norm: float = 1.0  # <= 0 disables clipping
    num_workers: int = ranged(0, min=0)  # DataLoader workers: loading, cropping, the stage's per-sample transform
    log_every: int = ranged(10, min=1)
    val_every: int = ranged(0, min=0)  # 0: no validation during training
    ckpt_every: int = ranged(500, min=1)  # optimizer steps between checkpoints (the last step always gets one)
    keep_last: int = ranged(3, min=0)  # checkpoints kept (0: all)
    resume: Optional[str] = None  # latest (newest run of run_name) | a run folder | a checkpoint folder
    nonfinite: str = "halt"  # halt | skip
    max_nonfinite: int = ranged(10, min=0)  # skip mode: halt after this many skipped steps
    tracker: str = "tensorboard"  # tensorboard | none
    cpu: bool = False  # force CPU even when CUDA is present (CPU is used anyway when it is not)
    export: bool = True
