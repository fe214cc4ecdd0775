"""What every pipeline shares: input handling, output size and limits, the output type; and the bicubic baseline.

A pipeline subclass implements ``_restore(lr (B, 3, h, w) in [0, 1], (H, W), prompt, **kwargs) -> (B, 3, H, W)``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..errors import ImageSizeError, InputError
from ..io import format_images, to_image_tensors
from .resize import check_upscale, resize_bicubic

logger = logging.getLogger(__name__)

MIN_SIDE = 8  # input pixels: smaller images are refused
MAX_OUTPUT_PIXELS = 8192 * 8192  # output pixels: larger outputs are refused (split the image or raise the limit)


@dataclass
class TVTPipelineOutput:
    """``images``: list of PIL images ("pil"), (B, H, W, 3) float array or list ("np"), (B, 3, H, W) tensor or list ("pt")."""

    images: Any


class _SRPipeline:
    """Shared input handling and limits: subclasses implement ``_restore(lr (1, 3, h, w), size, ...)``."""

    architecture = "bicubic"

    def __init__(self, upsampling: str = "pil", min_side: int = MIN_SIDE, max_output_pixels: int = MAX_OUTPUT_PIXELS):
        self.upsampling = upsampling
        self.min_side = min_side
        self.max_output_pixels = max_output_pixels

    def output_size(self, h: int, w: int, upscale: float) -> tuple[int, int]:
        check_upscale(upscale)
        H, W = round(h * upscale), round(w * upscale)
        if min(h, w) < self.min_side:
            raise ImageSizeError(f"input {w}x{h} is too small: both sides must be >= {self.min_side} pixels")
        if H * W > self.max_output_pixels:
            raise ImageSizeError(
                f"output {W}x{H} ({H * W / 1e6:.1f} MP) exceeds max_output_pixels={self.max_output_pixels / 1e6:.1f} MP; "
                "lower --upscale, split the image, or raise the limit"
            )
        return H, W

    def upsample(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, 3, h, w) [0, 1] -> (B, 3, *size): ``resize_bicubic`` with this pipeline's ``upsampling``."""
        return resize_bicubic(lr, size, self.upsampling)

    @torch.inference_mode()
    def __call__(self, images, prompt: str | Sequence[str] | None = None, upscale: float = 4, output_type: str = "pil",
                 **kwargs) -> TVTPipelineOutput:
        tensors = to_image_tensors(images)  # list of (3, h, w) in [0, 1]
        prompts = [prompt] * len(tensors) if prompt is None or isinstance(prompt, str) else list(prompt)
        if len(prompts) != len(tensors):
            raise InputError(f"{len(prompts)} prompts for {len(tensors)} images")
        sizes = [self.output_size(t.shape[-2], t.shape[-1], upscale) for t in tensors]  # check all before work
        if isinstance(images, torch.Tensor) and images.ndim == 4 and len(set(prompts)) == 1:
            # a (B, 3, h, w) batch runs as one batch; lists run image by image (bounded memory, any sizes)
            outs = list(self._restore(torch.stack(tensors), sizes[0], prompts[0], **kwargs).cpu())
        else:
            outs = [self._restore(t[None], size, p, **kwargs)[0].cpu() for t, size, p in zip(tensors, sizes, prompts)]
        return TVTPipelineOutput(images=format_images(outs, output_type))

    def _restore(self, lr, size, prompt, **kwargs):
        raise NotImplementedError

    def to(self, device=None, dtype=None):
        return self

    def enable_fast_inference(self, **options) -> "_SRPipeline":
        logger.info("%s: no network, nothing to speed up", self.architecture)
        return self

    def disable_fast_inference(self) -> "_SRPipeline":
        return self


class BicubicPipeline(_SRPipeline):
    """The bicubic baseline through the same API (prompt, tiling and colour fix do not apply)."""

    architecture = "bicubic"

    def _restore(self, lr, size, prompt=None, **_):
        return self.upsample(lr.float(), size)
