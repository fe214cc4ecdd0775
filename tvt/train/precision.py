"""The parts of a training step whose precision is not the run's autocast dtype, as the official release has them.

Official TVT under ``--mixed_precision fp16`` (train.sh:20): the generator and the LPIPS loss run inside
accelerate's fp16 autocast (prepared models: train.py:142-146); the fake-score UNet keeps fp32 weights
(model.py:139, where the real UNet is cast to fp16 at 138) and is called outside autocast (train.py:207 and 223 call
its methods, not a prepared forward; model.py:241-246, 189-194); the RAM tagger runs in fp16 (train.py:139, 181).
"""
from __future__ import annotations

import functools

import torch
from torch import nn


def run_in_float32(module: nn.Module) -> nn.Module:
    """Make ``module`` compute in float32 outside autocast: its floating inputs cast to float32, autocast off in its
    forward, even when accelerate's ``prepare`` wraps that forward in the run's autocast (the wrapper is outside,
    this one inside). Its weights must be float32 (do not store them in the compute dtype). In place."""
    forward = module.forward

    @functools.wraps(forward)
    def float32_forward(*args, **kwargs):
        device = next(module.parameters()).device.type
        with torch.autocast(device_type=device, enabled=False):
            return forward(*_float32(args), **_float32(kwargs))

    module.forward = float32_forward
    return module


def _float32(x):
    if torch.is_tensor(x):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, dict):
        return {k: _float32(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_float32(v) for v in x)
    return x


def tagger_dtype(device: torch.device) -> torch.dtype:
    """The training tagger's dtype: float16 on CUDA, whatever the run's precision (official train.py:139); float32 on
    the CPU, where half-precision kernels are slow or missing."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32
