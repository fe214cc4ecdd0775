"""The machine a benchmark's figures come from, named in every results file (CPU model and cores, GPU if any)."""
from __future__ import annotations

import os
import platform
import subprocess


def cpu_model() -> str:
    """The CPU's model name (lscpu), else what Python's platform module knows."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.SubprocessError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"


def machine(device: str = "cpu") -> str:
    """e.g. "Intel(R) Xeon(R) Processor, 2 cores; GPU: none" or "...; GPU: NVIDIA H200" (on a CUDA device)."""
    import torch

    gpu = torch.cuda.get_device_name(torch.device(device)) if str(device).startswith("cuda") else "none"
    return f"{cpu_model()}, {os.cpu_count()} cores; GPU: {gpu}"


def not_measured() -> str:
    """The cell of a GPU figure a run without a GPU leaves empty: which machine ran instead."""
    return f"not measured (ran on {cpu_model()}, {os.cpu_count()} cores, without a GPU)"
