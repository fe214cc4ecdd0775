"""Memory of stages with large frozen models: frozen weights stored in the compute dtype, bytes by category."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

AUTOCAST_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # autocast runs these in the compute dtype


def compute_dtype(accelerator) -> torch.dtype:
    """The dtype autocast computes in: float16 / bfloat16 under fp16 / bf16 mixed precision, else float32."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(str(accelerator.mixed_precision), torch.float32)


def store_frozen_weights(module: nn.Module, dtype: torch.dtype) -> int:
    """Store the frozen weights and biases of ``module``'s Linear/Conv layers in ``dtype``, in place; returns the
    bytes this frees. Trainable parameters (LoRA, fully trained layers) keep their fp32 master weights.

    Under autocast these layers compute in ``dtype`` whatever their weights' dtype: autocast would round each
    fp32 weight to ``dtype`` at every call, so storing the rounded copy once gives the same numbers with half the
    memory (and no cast kernels). Norm and embedding layers, which autocast does not cast (or runs in fp32), stay
    as they are: a fraction of a percent of a UNet's weights. No-op for float32."""
    freed = 0
    if dtype == torch.float32:
        return freed
    for layer in module.modules():
        if not isinstance(layer, AUTOCAST_LAYERS):
            continue
        for p in layer.parameters(recurse=False):
            if not p.requires_grad and p.is_floating_point() and p.dtype != dtype:
                freed += p.numel() * (p.element_size() - torch.finfo(dtype).bits // 8)
                p.data = p.data.to(dtype)
    return freed


def memory_by_category(modules: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer] = ()) -> dict[str, int]:
    """Bytes held by ``modules`` and ``optimizers``: ``trainable`` parameters, their ``gradients`` (as allocated
    now), ``frozen`` parameters (all dtypes; ``frozen_<dtype>`` per dtype) and ``optimizer_state``. A parameter
    shared by several modules counts once."""
    out = {"trainable": 0, "gradients": 0, "frozen": 0, "optimizer_state": 0}
    seen: set[int] = set()
    for module in modules:
        for p in module.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            size = p.numel() * p.element_size()
            if p.requires_grad:
                out["trainable"] += size
                out["gradients"] += 0 if p.grad is None else p.grad.numel() * p.grad.element_size()
            else:
                out["frozen"] += size
                key = f"frozen_{str(p.dtype).removeprefix('torch.')}"
                out[key] = out.get(key, 0) + size
    for opt in optimizers:
        for state in opt.state.values():
            out["optimizer_state"] += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    return out
