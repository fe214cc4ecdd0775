"""Is a device the user named there on this machine? One line saying what is there instead of a torch traceback
from the first tensor moved to it (``--device cuda`` on a machine without a GPU)."""
from __future__ import annotations

import torch

from .errors import InputError


def check_device(name: str | torch.device) -> torch.device:
    """``name`` as a torch.device when this machine has it; InputError naming what it has otherwise."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device '{name}': give cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a build without CUDA"
            raise InputError(f"device '{name}': no CUDA GPU is available here (torch {torch.__version__}, {build}); "
                             "use --device cpu")
        if device.index is not None and device.index >= count:
            raise InputError(f"device '{name}': this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device '{name}': Apple MPS is not available here; use --device cpu")
    return device
