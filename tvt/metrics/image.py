"""Fast in-loop image metrics on tensors (training validation, VAE evaluation, the demo).

The Table 2 numbers come from pyiqa (tvt.metrics.registry); ``psnr_y`` is the same protocol (Y of YCbCr,
BT.601, no border crop) written out for batches on any device, and tested equal to pyiqa's.
"""
from __future__ import annotations

import torch


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of RGB in [0, 1]: (B, 3, H, W) -> (B, 1, H, W) in [16/255, 235/255]."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def psnr_y(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR on Y of YCbCr, no border crop: (B, 3, H, W) in [0, 1] twice -> (B,)."""
    if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(f"psnr_y needs two (B, 3, H, W) images of one shape, got {tuple(pred.shape)}, {tuple(gt.shape)}")
    mse = (rgb_to_y(pred.float().clamp(0, 1)) - rgb_to_y(gt.float().clamp(0, 1))).pow(2).mean(dim=(1, 2, 3))
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))
