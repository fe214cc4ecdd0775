"""Optimizers and learning-rate schedulers of the stages: AdamW (fused on CUDA, 8-bit on request), LDM's
``scale_lr`` rule, diffusers' schedulers counted in optimizer steps."""
from __future__ import annotations

import logging

import torch

from ..errors import ConfigError
from .train_config import TrainConfig

log = logging.getLogger("tvt.train")


def effective_lr(cfg: TrainConfig, lr: float | None = None, num_processes: int | None = None) -> float:
    """The optimizer lr for base lr ``lr`` (default ``cfg.lr``); under ``scale_lr`` LDM's rule (main.py):
    ``grad_accum x num_processes x batch_size x base_lr``. The number of processes is accelerate's, unless given."""
    base = cfg.lr if lr is None else lr  # an explicit 0.0 is a value, not "unset"
    if not cfg.scale_lr:
        return base
    if num_processes is None:
        from accelerate import PartialState

        num_processes = PartialState().num_processes
    scaled = cfg.grad_accum * num_processes * cfg.batch_size * base
    log.info("scale_lr: lr %.3e = %d (grad_accum) x %d (processes) x %d (batch_size) x %.2e (base lr)",
             scaled, cfg.grad_accum, num_processes, cfg.batch_size, base)
    return scaled


def make_optimizer(params, cfg: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW over the trainable ``params``: fused (one kernel for all parameters) when every one is a float
    tensor on CUDA, torch's default implementation otherwise (CPU); 8-bit with ``cfg.use_8bit_adam``."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters for the optimizer")
    kwargs = dict(lr=effective_lr(cfg, lr), betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay)
    if cfg.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ConfigError("train.use_8bit_adam=true needs bitsandbytes: pip install bitsandbytes") from None
        return bnb.optim.AdamW8bit(params, **kwargs)
    if all(p.is_cuda and p.is_floating_point() for p in params):
        kwargs["fused"] = True
    return torch.optim.AdamW(params, **kwargs)


def make_scheduler(optimizer, cfg: TrainConfig):
    from diffusers.optimization import get_scheduler

    return get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.lr_warmup_steps,
                         num_training_steps=cfg.max_steps)
