"""fp16 mixed precision on the CPU as accelerate runs it on CUDA: float16 autocast around every prepared model and
one loss scaler shared by every prepared optimizer.

On the CPU accelerate makes neither (``mixed_precision="fp16"`` then trains in fp32), so no CPU test would see what
a GPU fp16 run does. ``emulate_fp16`` attaches them by hand to every Accelerator made while it is active (the
Trainer's included), so the training code runs through accelerate's own fp16 paths: autocast in ``prepare``,
``GradScaler.scale`` in ``backward``, ``unscale_``/``step``/``update`` and the scaler in checkpoints.
"""
from __future__ import annotations

import pytest
import torch


def emulate_fp16(monkeypatch: pytest.MonkeyPatch, autocast: bool = True, **scaler_kwargs) -> list:
    """Every Accelerator made from now on with ``mixed_precision="fp16"`` autocasts to float16 and scales its losses
    with ``torch.amp.GradScaler("cpu", **scaler_kwargs)`` (``enabled=False``: fp16 autocast without loss scaling).
    ``autocast=False``: everything fp16 but the autocast itself (accelerate's AutocastKwargs(enabled=False)), so
    the models compute in float32 and loss scaling is the only difference from an fp32 run. Returns the list the
    emulated accelerators are appended to."""
    import accelerate
    from accelerate.accelerator import Accelerator  # accelerate's own class, even when an emulation is active
    from accelerate.utils import AutocastKwargs

    made = []

    class FP16OnCPU(Accelerator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.state.mixed_precision == "fp16" and self.scaler is None:
                self.native_amp = True  # accelerate's prepare() now wraps forward in float16 autocast
                self.scaler = torch.amp.GradScaler("cpu", **scaler_kwargs)
                if not autocast:
                    self.autocast_handler = AutocastKwargs(enabled=False)
                made.append(self)

    monkeypatch.setattr(accelerate, "Accelerator", FP16OnCPU)
    return made


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one mixed-precision setting per process: set by the test, then back to unset."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()
