"""One optimizer's update from its accumulated gradients: unscaled exactly once under fp16 loss scaling, clipped,
stepped; the loss scaler updated once per training step, after the last optimizer.

Stages with two optimizers update them one after the other, as the official TVT train.py does (generator backward,
clip, step at lines 210-213; then the fake score's at 224-227) and Lightning does for LDM's autoencoder and
discriminator. Under fp16, accelerate gives every prepared optimizer the same ``GradScaler``, and two of its
helpers do not fit several optimizers with gradient accumulation:

- ``Accelerator.clip_grad_norm_`` unscales EVERY prepared optimizer (accelerate 1.15 accelerator.py:3047 calls
  ``unscale_gradients()`` with none named, 2946-2955, "TODO: this unscales all optimizers"): the second optimizer's
  clip raises "unscale_() has already been called", and an optimizer unscaled before its last micro-batch's
  backward would mix unscaled and scaled gradients;
- ``AcceleratedOptimizer.step`` updates the scaler after each optimizer (optimizer.py:173-174): when the scale
  changes there (growth, or inf in the first optimizer), the second optimizer's gradients, multiplied by the old
  scale, are divided by the new one.

So ``OptimizerUpdates`` unscales only the optimizer it steps, steps it through ``GradScaler.step`` (which skips it
on inf/NaN gradients) and calls ``GradScaler.update`` once, in ``finish``: every gradient of the step was multiplied
by one scale and is divided by that same one (torch's documented use of one scaler with several optimizers).
Without a loss scaler (fp32, bf16, DeepSpeed's own) it is accelerate's clip and step unchanged.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError


def loss_scaler(accelerator):
    """accelerate's fp16 ``GradScaler`` when it scales losses, else None."""
    scaler = getattr(accelerator, "scaler", None)
    return scaler if scaler is not None and scaler.is_enabled() else None


class OptimizerUpdates:
    """The updates of one training step: ``take(optimizer)`` for each optimizer in the stage's order, then
    ``finish()``. ``scale`` is the loss scale the step's gradients were multiplied by (None without a scaler)."""

    def __init__(self, accelerator, max_grad_norm: float):
        from accelerate.utils import DistributedType

        self.acc, self.max_grad_norm = accelerator, max_grad_norm
        self.scaler = loss_scaler(accelerator)
        if self.scaler is not None and accelerator.distributed_type == DistributedType.FSDP:
            raise ConfigError("fp16 loss scaling with FSDP is not supported here: set train.mixed_precision=bf16")
        self.scale = float(self.scaler.get_scale()) if self.scaler is not None else None
        self._unscaled = False

    def take(self, optimizer) -> bool:
        """Clip and step ``optimizer`` (a prepared one), then zero its gradients. False: its gradients held inf/NaN
        and the loss scaler skipped the step (the weights unchanged)."""
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if self.scaler is None:
            if self.max_grad_norm > 0:
                self.acc.clip_grad_norm_(params, self.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return True
        self.acc.unscale_gradients(optimizer)  # this optimizer's gradients only, once
        self._unscaled = True
        grads = [p.grad for p in params if p.grad is not None]
        if self.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        else:
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        finite = bool(torch.isfinite(norm))  # exactly when unscale_ found no inf/NaN (the scaler's own test)
        if finite:
            self.scaler.step(optimizer.optimizer)  # not optimizer.step(): that would update the scaler now
        optimizer.zero_grad(set_to_none=True)
        return finite

    def finish(self) -> None:
        """One scaler update per step: it halves the scale if any optimizer found inf/NaN, and grows it after
        ``growth_interval`` clean steps."""
        if self.scaler is not None and self._unscaled:
            self.scaler.update()
