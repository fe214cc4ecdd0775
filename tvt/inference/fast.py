"""The opt-in fast path of TVTPipeline (``enable_fast_inference``; without it every default is unchanged):
torch.compile of the UNet and VAE encoder/decoder, channels_last, an SDPA backend order, one dtype for the whole
generator, and bounded latent tiles for large images (tvt.inference.tiling), several tiles per UNet call."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import InputError

logger = logging.getLogger(__name__)

COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class FastInference:
    """The options of ``TVTPipeline.enable_fast_inference`` in effect (``TVTPipeline.fast``)."""

    compile: bool | tuple[str, ...]
    mode: str | None
    channels_last: bool
    sdpa_backend: str | None
    bounded_tiles: bool
    tile_batch: int
    backend: str = "inductor"
    dynamic: bool | None = None


class FastPathMixin:
    """TVTPipeline's fast path. Uses the pipeline's ``generator``, ``to``, ``unet`` and ``vae``; sets ``fast``."""

    fast: FastInference | None = None  # the fast path's options; None = off

    def enable_fast_inference(self, compile: bool | Sequence[str] = True, mode: str | None = "auto",
                              channels_last: bool = True, sdpa_backend: str | None = "auto",
                              dtype: torch.dtype | str | None = None, upcast_vae: bool | None = None,
                              bounded_tiles: bool = False, tile_batch: int = 16, backend: str | Callable = "inductor",
                              dynamic: bool | None = None):
        """Opt-in speed-ups (returns the pipeline). Outputs equal the eager ones up to float rounding, except where
        ``bounded_tiles`` picks other tiles than the official ones.

        compile, mode, backend, dynamic: torch.compile of the UNet and the VAE encoder/decoder (or of the parts
            named, e.g. ("unet",)); backend "aot_eager" traces without code generation (quick checks); mode "auto" is
            max-autotune with CUDA graphs for static shapes on CUDA, torch's default on CPU
            (OneStepGenerator.enable_fast_inference). The first image of each size compiles (minutes at full size).
        channels_last: the UNet and VAE in channels_last memory format.
        sdpa_backend: "auto" (cuDNN attention first on Hopper GPUs, else torch's order), "flash", "efficient",
            "cudnn", "math", or None (torch's order); one that cannot run here is logged and torch's order used.
        dtype, upcast_vae: as ``to``: the whole generator in ``dtype``; fp16 keeps the VAE in fp32 unless
            upcast_vae=False, bf16 casts the VAE too unless upcast_vae=True.
        bounded_tiles: when a call leaves tile_size unset, latent tiles of BOUNDED_TILE_OUTPUT_PX /
            BOUNDED_OVERLAP_OUTPUT_PX output pixels where they take fewer UNet MACs than the official tiling
            (``tiling_macs``), and the VAE whole up to FAST_VAE_TILE_OUTPUT_PX.
        tile_batch: latent tiles per UNet call (an image's tiles in as few, even, calls as this allows).
        """
        if tile_batch < 1:
            raise InputError(f"tile_batch must be >= 1, got {tile_batch}")
        if mode is not None and mode not in COMPILE_MODES:
            raise InputError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got '{mode}'")
        if dtype is not None:
            self.to(dtype=dtype, upcast_vae=upcast_vae)
        self.generator.enable_fast_inference(compile=compile, mode=mode, backend=backend, dynamic=dynamic,
                                             channels_last=channels_last, sdpa_backend=sdpa_backend)
        self.fast = FastInference(compile if isinstance(compile, bool) else tuple(compile), mode, channels_last,
                                  sdpa_backend, bounded_tiles, tile_batch, backend, dynamic)
        logger.info("fast path: %s; unet %s, vae %s", self.fast, self.unet.dtype, self.vae.dtype)
        return self

    def disable_fast_inference(self):
        """Back to the eager path (the dtype stays; ``to`` changes it)."""
        self.generator.disable_fast_inference()
        self.fast = None
        return self


def enable_fast_options(pipe, compile: bool = False, mode: str = "auto", channels_last: bool = False,
                        bounded_tiles: bool = False):
    """The command lines' fast-path keys (scripts/infer.py, scripts/eval.py): the fast path with these options and
    the "auto" SDPA order when any is set; nothing otherwise (the defaults stay as they are)."""
    if compile or channels_last or bounded_tiles:
        pipe.enable_fast_inference(compile=compile, mode=mode, channels_last=channels_last, bounded_tiles=bounded_tiles)
    return pipe
