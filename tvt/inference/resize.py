"""Resizing and padding of image batches at the pipeline's boundary: bicubic to the output size, pad to the stride."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError
from ..io import pil_to_tensor, tensor_to_pil

MAX_UPSCALE = 4  # the model restores bicubic x4-upsampled inputs (x4 training pairs, Sec. 4.1)


def check_upscale(upscale: float) -> float:
    if not 1 <= upscale <= MAX_UPSCALE:
        raise InputError(f"upscale must be between 1 and {MAX_UPSCALE}, got {upscale}: the model restores "
                         f"bicubic x{MAX_UPSCALE}-upsampled inputs, so larger factors are not what it learned")
    return upscale


def resize_bicubic(x: torch.Tensor, size: tuple[int, int], method: str = "pil") -> torch.Tensor:
    """Bicubic resize of (B, 3, h, w) in [0, 1] to ``size`` = (H, W).

    "pil": PIL's bicubic on the 8-bit image, what the official inference (and the usual "Bicubic" row of SR
    tables) does; "torch": F.interpolate bicubic (a = -0.75, no 8-bit rounding), clamped.
    """
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if method == "torch":
        return F.interpolate(x.float(), size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    if method != "pil":
        raise InputError(f"upsampling must be 'pil' or 'torch', got '{method}'")
    out = [pil_to_tensor(tensor_to_pil(im).resize((size[1], size[0]), Image.BICUBIC)) for im in x]
    return torch.stack(out).to(x.device)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad bottom/right of (B, C, H, W) to multiples of ``multiple``: reflect, or replicate where reflect cannot."""
    ph, pw = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
    if not ph and not pw:
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)
