"""Colour correction of the SR output towards the (bicubic-upsampled) LR input, as OSEDiff/TVT do.

One-step SD outputs can drift in colour; the official code realigns them with the LR image:
- ``adain``: per-image, per-channel mean/std of the output set to those of the reference.
- ``wavelet``: keep the output's high frequencies and take the low frequencies (colour, shading) from
  the reference; 5 levels of a dilated 3x3 binomial blur (the "a trous" wavelet of StableSR/OSEDiff).

All functions take tensors (B, 3, H, W) in [0, 1] with equal sizes and return the same shape, clamped.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import InputError


def _check(image: torch.Tensor, reference: torch.Tensor) -> None:
    if image.ndim != 4 or image.shape != reference.shape:
        raise ValueError(f"colour fix needs two (B, C, H, W) tensors of equal shape, got {tuple(image.shape)} "
                         f"and {tuple(reference.shape)}")


def _mean_std(x: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.flatten(2)  # (B, C, H*W)
    mean = flat.mean(-1)[..., None, None]
    std = (flat.var(-1) + eps).sqrt()[..., None, None]  # unbiased variance, as the official code
    return mean, std


def adain_color_fix(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Give ``image`` the per-channel mean and std of ``reference`` (adaptive instance normalisation)."""
    _check(image, reference)
    x = image.float()
    m_x, s_x = _mean_std(x)
    m_r, s_r = _mean_std(reference.float())
    return ((x - m_x) / s_x * s_r + m_r).clamp(0, 1).to(image.dtype)


def _wavelet_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    """3x3 binomial blur with dilation ``radius`` and replicate padding; (B, C, H, W) -> same."""
    k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=x.dtype, device=x.device) / 16
    c = x.shape[1]
    kernel = k[None, None].repeat(c, 1, 1, 1)  # depthwise
    x = F.pad(x, (radius,) * 4, mode="replicate")
    return F.conv2d(x, kernel, groups=c, dilation=radius)


def wavelet_decomposition(x: torch.Tensor, levels: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """x = high + low, with ``low`` the ``levels``-times blurred image (radii 1, 2, 4, ...)."""
    high = torch.zeros_like(x)
    for i in range(levels):
        low = _wavelet_blur(x, 2**i)
        high = high + (x - low)
        x = low
    return high, x


def wavelet_color_fix(image: torch.Tensor, reference: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """High frequencies of ``image`` + low frequencies of ``reference``."""
    _check(image, reference)
    high, _ = wavelet_decomposition(image.float(), levels)
    _, low = wavelet_decomposition(reference.float(), levels)
    return (high + low).clamp(0, 1).to(image.dtype)


def apply_color_fix(image: torch.Tensor, reference: torch.Tensor, method: str | None) -> torch.Tensor:
    """Dispatch on ``method`` in {"adain", "wavelet", None/"none"}."""
    if method in (None, "none", "None", ""):
        return image
    if method == "adain":
        return adain_color_fix(image, reference)
    if method == "wavelet":
        return wavelet_color_fix(image, reference)
    raise InputError(f"unknown colour fix '{method}', choose from adain, wavelet, none")
