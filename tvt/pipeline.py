"""Inference for images of any size: TVT (VAE-D4 + CE-UNet), the OSEDiff architecture (VAE-D8 + SD UNet)
and bicubic, behind one API. Defaults follow the official inference (TVT/inferences/inference.py):

    lr (B, 3, h, w) in [0, 1]
      -> PIL bicubic to the output size (H, W) = (h * upscale, w * upscale); outputs whose short side is below
         process_size (512) are made at that size and resized back (official: the LR is enlarged first)
      -> reflect-pad H, W to a multiple of the stride (VAE factor x UNet factor), [-1, 1]
      -> prompt per image: the model's PromptSpec (official: DAPE tags of the upscaled LR + "clean, ...")
      -> OneStepGenerator.encode            posterior sample, seeded (VAE tiling above vae_tile_size pixels)
      -> OneStepGenerator.denoise           at the model's timestep (TVT: 1); latent tiles, Gaussian blending
      -> OneStepGenerator.decode, crop to (H, W), colour fix (AdaIN) against the upsampled LR
      -> (B, 3, H, W) in [0, 1]

Elsewhere: reading and converting images in tvt.io; the one-step math and latent tiling in
tvt.models.generator; VAE tiling in tvt.models.vae; the export folder in tvt.export; the official release in
tvt.models.convert; colour fix in tvt.colorfix; prompts in tvt.prompts. Tile sizes are given in INPUT (LR)
pixels; we convert to latent pixels. ``super_resolve_folder`` runs a pipeline over a folder (``batch_size``
images per call, reading and writing in threads).

Speed, opt-in (``TVTPipeline.enable_fast_inference``; everything above is unchanged without it): torch.compile of
the UNet and VAE encoder/decoder, channels_last, an SDPA backend order, one dtype for the whole generator, and
"bounded" latent tiles for large images: 384 / 64 output pixels (TVT latent 96 / 16, so the CE-UNet's
full-resolution first level attends over at most 96 x 96 = 9,216 tokens per tile, the token count of OSEDiff's
official 96 x 96 latent tile, where TVT's official 192 x 192 tile has 36,864), used where they take fewer UNet
MACs (attention included) than the official tiling, several tiles per UNet call.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from .colorfix import apply_color_fix
from .errors import InputError, TVTError
from .io import (format_images, image_to_tensor, is_image_file, list_images, pil_to_tensor, save_image, tensor_to_pil,
                 to_image_tensors)
from .models.generator import OneStepGenerator, tile_starts
from .models.loading import MissingWeightsError, download_if_present, load_text_parts, looks_local
from .models.sd21 import downscale_factor
from .models.vae import enable_vae_tiling
from .prompts import PromptExtractor, PromptSpec, build_prompt_extractor, encode_prompts

logger = logging.getLogger(__name__)

# Default tiles cover the same image area in both official codes: OSEDiff latent 96/32 (x8 VAE) and
# TVT inference_tile.py latent 192/64 (x4 VAE), i.e. 768/256 output pixels (192/64 input pixels at x4).
TILE_OUTPUT_PX = 768
OVERLAP_OUTPUT_PX = 256
# The fast path's bounded tiles (module docstring) and its VAE tile: the VAE runs whole up to 1024 x 1024 outputs.
BOUNDED_TILE_OUTPUT_PX = 384
BOUNDED_OVERLAP_OUTPUT_PX = 64
FAST_VAE_TILE_OUTPUT_PX = 1024
MAX_UPSCALE = 4  # the model restores bicubic x4-upsampled inputs (x4 training pairs, Sec. 4.1)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class ImageSizeError(InputError):
    """An input image is too small or would give an output too large for the configured limits."""


@dataclass
class TVTPipelineOutput:
    """``images``: list of PIL images ("pil"), (B, H, W, 3) float array or list ("np"), (B, 3, H, W) tensor or list ("pt")."""

    images: Any


def check_upscale(upscale: float) -> float:
    if not 1 <= upscale <= MAX_UPSCALE:
        raise InputError(f"upscale must be between 1 and {MAX_UPSCALE}, got {upscale}: the model restores "
                         f"bicubic x{MAX_UPSCALE}-upsampled inputs, so larger factors are not what it learned")
    return upscale


# ---------------------------------------------------------------------------------------------
# Resizing and padding
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Pipelines
# ---------------------------------------------------------------------------------------------
class _SRPipeline:
    """Shared input handling and limits: subclasses implement ``_restore(lr (1, 3, h, w), size, ...)``."""

    architecture = "bicubic"

    def __init__(self, upsampling: str = "pil", min_side: int = 8, max_output_pixels: int = 8192 * 8192):
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


class BicubicPipeline(_SRPipeline):
    """The bicubic baseline through the same API (prompt, tiling and colour fix do not apply)."""

    architecture = "bicubic"

    def _restore(self, lr, size, prompt=None, **_):
        return self.upsample(lr.float(), size)


class TVTPipeline(_SRPipeline):
    """One-step Real-ISR for TVT (VAE-D4 + CE-UNet) and the OSEDiff architecture (VAE-D8 + SD UNet).

    Build with ``from_pretrained`` (export folder, official weights, SD 2.1 folder, "bicubic"),
    ``from_sd`` (untrained, from SD 2.1 + a VAE-D4) or ``from_components``.
    """

    def __init__(self, vae: nn.Module, unet: nn.Module, text_encoder: nn.Module, tokenizer, scheduler,
                 prompt_spec: PromptSpec | None = None, architecture: str | None = None, timestep: int = 1,
                 base_model: str | None = None, prompt_extractor: PromptExtractor | None = None,
                 sample_posterior: bool = True, upsampling: str = "pil", process_size: int = 512, min_side: int = 8,
                 max_output_pixels: int = 8192 * 8192):
        """prompt_spec: how the model is prompted (tvt.prompts; recorded in exports); prompt_extractor: the tagger of
        that spec (None: the spec's fixed ``tags``). sample_posterior, upsampling ("pil" bicubic), process_size:
        the official inference's choices (tvt.pipeline module docstring)."""
        super().__init__(upsampling=upsampling, min_side=min_side, max_output_pixels=max_output_pixels)
        self.vae, self.unet, self.text_encoder, self.tokenizer, self.scheduler = vae, unet, text_encoder, tokenizer, scheduler
        for m in (vae, unet, text_encoder):
            m.eval().requires_grad_(False)
        self.generator = OneStepGenerator(vae, unet, scheduler.alphas_cumprod, timestep=timestep,
                                          sample_posterior=sample_posterior)
        self.architecture = architecture or ("tvt" if self.vae_factor == 4 else "osediff")
        self.prompt_spec = prompt_spec or PromptSpec()
        self.base_model = base_model
        self.prompt_extractor = prompt_extractor
        self.process_size = process_size
        self._embeds: dict[str, torch.Tensor] = {}
        self.fast: FastInference | None = None  # the fast path's options; None = off
        self._unet_macs_fit: tuple[float, float, float] | None = None

    # ----- properties -----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def vae_factor(self) -> int:
        return self.generator.scale_factor

    @property
    def unet_factor(self) -> int:
        """Down-sampling of the UNet: its latent input must be a multiple of this (8 for SD, 16 for CE-UNet)."""
        cfg = getattr(self.unet, "config", None)
        return downscale_factor(cfg) if cfg is not None else 1

    @property
    def stride(self) -> int:
        """Output pixels are padded to a multiple of this."""
        return self.vae_factor * self.unet_factor

    # ----- device / precision ---------------------------------------------------------------
    def to(self, device=None, dtype: torch.dtype | str | None = None, upcast_vae: bool | None = None) -> "TVTPipeline":
        """Move models; ``dtype`` a torch dtype or a DTYPES name; ``upcast_vae`` (default: True for fp16) keeps the
        VAE in fp32 against NaN/black images."""
        if isinstance(dtype, str):
            if dtype not in DTYPES:
                raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
            dtype = DTYPES[dtype]
        if device is not None:
            self.generator.to(device)  # moves the UNet, VAE and alphas_cumprod (kept fp32)
            self.text_encoder.to(device)
            self._embeds.clear()
        if dtype is None:
            return self
        upcast = dtype == torch.float16 if upcast_vae is None else upcast_vae
        vae_dtype = torch.float32 if upcast else dtype
        # an explicit upcast_vae is applied; without one, a VAE in fp32 (upcast before) or in dtype is left as is
        if self.unet.dtype != dtype or self.vae.dtype not in (dtype, torch.float32) or (
                upcast_vae is not None and self.vae.dtype != vae_dtype):
            self.unet.to(dtype=dtype)
            self.text_encoder.to(dtype=dtype)
            self.vae.to(dtype=vae_dtype)
            if upcast and dtype != torch.float32:
                logger.info("VAE kept in float32 (fp16 VAE decoders overflow into NaN/black images)")
            self._embeds.clear()
        return self

    # ----- fast path -----------------------------------------------------------------------
    def enable_fast_inference(self, compile: bool | Sequence[str] = True, mode: str | None = "auto",
                              channels_last: bool = True, sdpa_backend: str | None = "auto",
                              dtype: torch.dtype | str | None = None, upcast_vae: bool | None = None,
                              bounded_tiles: bool = False, tile_batch: int = 16, backend: str | Callable = "inductor",
                              dynamic: bool | None = None) -> "TVTPipeline":
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

    def disable_fast_inference(self) -> "TVTPipeline":
        """Back to the eager path (the dtype stays; ``to`` changes it)."""
        self.generator.disable_fast_inference()
        self.fast = None
        return self

    # ----- tiling --------------------------------------------------------------------------
    def bounded_tiling(self) -> tuple[int, int]:
        """The bounded latent tile and overlap (BOUNDED_TILE_OUTPUT_PX / BOUNDED_OVERLAP_OUTPUT_PX output pixels):
        TVT 96 / 16, OSEDiff 48 / 8."""
        uf, vf = self.unet_factor, self.vae_factor
        return max(uf, BOUNDED_TILE_OUTPUT_PX // vf // uf * uf), BOUNDED_OVERLAP_OUTPUT_PX // vf

    def unet_macs(self, h: int, w: int) -> float:
        """MACs of one UNet call on a (1, 4, h, w) latent, conv + linear + attention: c + a hw + b (hw)^2 (the text
        projections are constant, every self-attention grows with the square of its level's tokens), fitted once
        to tvt.flops counts on a meta-device copy. A UNet without a diffusers config (a test stand-in) counts hw."""
        if self._unet_macs_fit is None:
            self._unet_macs_fit = _fit_unet_macs(self.unet, self.unet_factor)
        c, a, b = self._unet_macs_fit
        return c + a * h * w + b * (h * w) ** 2

    def tiling_macs(self, h: int, w: int, tile: int, overlap: int) -> float:
        """UNet MACs of denoising an h x w latent in ``tile`` / ``overlap`` tiles (0 = whole)."""
        if tile <= 0 or (h <= tile and w <= tile):
            return self.unet_macs(h, w)
        th, tw = min(tile, h), min(tile, w)
        return len(tile_starts(h, th, overlap)) * len(tile_starts(w, tw, overlap)) * self.unet_macs(th, tw)

    # ----- the work ----------------------------------------------------------------------------
    def encode_prompt(self, prompts: str | Sequence[str]) -> torch.Tensor:
        """(B, 77, D) CLIP embeddings (B = 1 for one string), cached per prompt text."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        new = [p for p in dict.fromkeys(prompts) if p not in self._embeds]
        if new:
            self._embeds.update(zip(new, encode_prompts(self.tokenizer, self.text_encoder, new)))
        return torch.stack([self._embeds[p] for p in prompts])

    def prompts_for(self, lr_up: torch.Tensor) -> list[str]:
        """The model's prompt for each upscaled LR image (official: tags of the upscaled LR, then the template)."""
        tags = self.prompt_extractor(lr_up) if self.prompt_extractor is not None else [self.prompt_spec.tags] * len(lr_up)
        return [self.prompt_spec.text(t) for t in tags]

    def latent_tiling(self, tile_size: int | None, tile_overlap: int | None, upscale: float,
                      latent_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """Input-pixel tile size/overlap -> latent tile/overlap (tile a multiple of the UNet factor); 0 = no tiling.

        None/None = the official defaults (TVT latent 192 / 64, OSEDiff latent 96 / 32: 768 / 256 output pixels),
        or, on the fast path with bounded_tiles and the ``latent_size`` (h, w) given, ``bounded_tiling()`` where
        that takes fewer UNet MACs; a tile without an overlap overlaps by a third, as the defaults do.
        """
        if tile_size is None and tile_overlap is None and latent_size and self.fast and self.fast.bounded_tiles:
            official = self.latent_tiling(None, None, upscale)
            bounded = self.bounded_tiling()
            return min(official, bounded, key=lambda t: self.tiling_macs(*latent_size, *t))
        uf, vf = self.unet_factor, self.vae_factor
        if tile_size is None:
            tile = TILE_OUTPUT_PX // vf
        elif tile_size <= 0:
            return 0, 0
        else:
            tile = max(uf, int(tile_size * upscale / vf) // uf * uf)
        if tile_overlap is None:
            overlap = OVERLAP_OUTPUT_PX // vf if tile_size is None else tile // 3
        else:
            overlap = int(round(tile_overlap * upscale / vf))
        if overlap >= tile:
            raise InputError(f"tile overlap ({tile_overlap} input px -> {overlap} latent) must be smaller than the tile "
                             f"({tile_size} input px -> {tile} latent)")
        return tile, overlap

    def prepare_tiling(self, height: int, width: int, upscale: float = 4, tile_size: int | None = None,
                       tile_overlap: int | None = None, vae_tile_size: int | None = None) -> tuple[int, int]:
        """Set the generator's latent tiling and the VAE's tiling for a padded (height, width) output; returns the
        latent (tile, overlap). Arguments as ``__call__``'s; vae_tile_size None = the latent tile in pixels (with
        bounded_tiles: at least FAST_VAE_TILE_OUTPUT_PX)."""
        vf = self.vae_factor
        tile, overlap = self.latent_tiling(tile_size, tile_overlap, upscale, latent_size=(height // vf, width // vf))
        self.generator.enable_tiling(tile, overlap, batch=self.fast.tile_batch if self.fast else 1)
        if vae_tile_size is None:
            bounded = self.fast is not None and self.fast.bounded_tiles and tile > 0
            vae_tile_size = max(tile * vf, FAST_VAE_TILE_OUTPUT_PX) if bounded else tile * vf
        enable_vae_tiling(self.vae, vae_tile_size)
        return tile, overlap

    def _restore(self, lr: torch.Tensor, size: tuple[int, int], prompt: str | None = None, tile_size: int | None = None,
                 tile_overlap: int | None = None, vae_tile_size: int | None = None, color_fix: str | None = "adain",
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """lr (B, 3, h, w) [0, 1] -> sr (B, 3, H, W) [0, 1]; ``prompt`` None = the model's prompt per image."""
        H, W = size
        work = size
        if self.process_size and min(size) < self.process_size:  # official: enlarge small inputs first
            s = self.process_size / min(size)
            work = (round(H * s), round(W * s))
        if self.upsampling == "pil":  # PIL works on the CPU: resize there, then move once
            lr_up = self.upsample(lr.float().cpu(), work).to(self.device)
        else:
            lr_up = self.upsample(lr.to(self.device, torch.float32), work)
        # lr_up (B, 3, H, W): the colour-fix reference too
        emb = self.encode_prompt(self.prompts_for(lr_up) if prompt is None else [prompt] * len(lr))  # (B, 77, D)

        x = pad_to_multiple(lr_up * 2 - 1, self.stride)  # (B, 3, H', W') in [-1, 1]
        self.prepare_tiling(x.shape[-2], x.shape[-1], work[0] / lr.shape[-2], tile_size, tile_overlap, vae_tile_size)

        if generator is None:  # seeded per image: an image gives the same output alone or in a batch
            generator = [torch.Generator().manual_seed(0) for _ in range(len(x))]
        z = self.generator.encode(x, generator=generator)  # (B, 4, H'/f, W'/f)
        z0 = self.generator.denoise(z, emb)
        sr = self.generator.decode(z0)[..., : work[0], : work[1]].float()  # (B, 3, H, W) in [-1, 1]
        if not torch.isfinite(sr).all():
            raise FloatingPointError(f"non-finite output at dtype {self.dtype}; run in float32/bfloat16 or keep the VAE in fp32")
        sr = apply_color_fix((sr + 1) / 2, lr_up, color_fix).clamp(0, 1)
        # back to the asked size (the official code means to, but drops the result of its resize)
        return sr if work == size else resize_bicubic(sr, size, self.upsampling)

    def __call__(self, images, prompt: str | Sequence[str] | None = None, upscale: float = 4, tile_size: int | None = None,
                 tile_overlap: int | None = None, vae_tile_size: int | None = None, color_fix: str | None = "adain",
                 generator: torch.Generator | None = None, output_type: str = "pil") -> TVTPipelineOutput:
        """Super-resolve one image or a batch.

        images: path, PIL, array or tensor ((3, h, w) / (B, 3, h, w) in [0, 1]) or a list; any size >= min_side
            (tvt.io.image_to_tensor says how modes and bit depths are read).
        prompt: None = the model's prompt (plus tags of ``prompt_extractor`` if set); a string or one per image.
        upscale: output = input x upscale, 1 to 4 (bicubic to that size, then the x1 one-step restoration).
        tile_size, tile_overlap: latent tiling in INPUT pixels; None = the official defaults (latent 192 / 64
            for TVT, 96 / 32 for OSEDiff; both 192 / 64 input pixels at x4); 0 = no tiling. Set on the
            generator (``enable_tiling``) for this call.
        vae_tile_size: VAE tiling in OUTPUT pixels; None = the latent tile in pixels; 0 = off.
        color_fix: "adain" | "wavelet" | None, against the bicubic-upsampled input.
        generator: draws the VAE posterior sample (official: sampled); None = a CPU generator seeded with 0.
        """
        return super().__call__(images, prompt=prompt, upscale=upscale, output_type=output_type, tile_size=tile_size,
                                tile_overlap=tile_overlap, vae_tile_size=vae_tile_size, color_fix=color_fix,
                                generator=generator)

    # ----- constructors ----------------------------------------------------------------------
    @classmethod
    def from_components(cls, vae, unet, text_encoder, tokenizer, scheduler, **kwargs) -> "TVTPipeline":
        return cls(vae, unet, text_encoder, tokenizer, scheduler, **kwargs)

    @classmethod
    def from_sd(cls, sd_path: str | Path, vae_d4: str | Path | nn.Module | None = None, architecture: str = "tvt",
                **kwargs) -> "TVTPipeline":
        """An UNTRAINED pipeline from SD 2.1-base: TVT = VAE-D4 + CE-UNet built from the SD UNet
        (tvt.models.ce_unet), OSEDiff = SD's VAE-D8 + SD UNet. For tests, demos and benchmarks."""
        from .models.ce_unet import build_ce_unet_from_sd, load_sd_unet
        from .models.vae import load_vae_d4, load_vae_d8

        te, tok, sched = load_text_parts(sd_path)
        sd_unet = load_sd_unet(sd_path)
        if architecture == "tvt":
            if vae_d4 is None:
                raise InputError("architecture='tvt' needs vae_d4 (a VAE-D4 folder or module)")
            vae = vae_d4 if isinstance(vae_d4, nn.Module) else load_vae_d4(vae_d4)
            unet = build_ce_unet_from_sd(sd_unet)
        elif architecture == "osediff":
            vae, unet = load_vae_d8(sd_path), sd_unet
        else:
            raise InputError(f"architecture must be 'tvt' or 'osediff', got '{architecture}'")
        return cls(vae, unet, te, tok, sched, architecture=architecture, base_model=str(sd_path), **kwargs)

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype | str = torch.float32, base_model: str | None = None, vae_d4=None,
                        architecture: str | None = None, prompt_extractor: str | PromptExtractor | None = "auto",
                        ram_weights: str | None = None, dape_weights: str | None = None, **kwargs):
        """Load, in this order: "bicubic" (the baseline); a TVT export folder or hub repo (tvt.export); the official
        TVT release (tvt.models.convert); an SD 2.1-base folder or hub id (untrained, see ``from_sd``).

        prompt_extractor: "auto" builds the tagger the model records (its PromptSpec: e.g. RAM + DAPE, with a clear
        error naming the weight files when they are absent; ``ram_weights``/``dape_weights`` override their paths);
        None runs without a tagger (the spec's fixed tags); or a PromptExtractor to use as is.
        dtype: a torch dtype or a DTYPES name ("fp32", "fp16", "bf16"); see ``to``.
        """
        from .export import CONFIG_NAME, is_tvt_export, load_tvt_export
        from .models.convert import load_official_release

        name = str(path_or_hub_id)
        if name == "bicubic" or architecture == "bicubic":
            return BicubicPipeline(**{k: v for k, v in kwargs.items() if k in ("upsampling", "min_side", "max_output_pixels")})
        local = Path(name).expanduser()
        if not local.exists():
            if looks_local(name):
                raise MissingWeightsError(f"model not found: {local} (expected a TVT export folder, the official TVT "
                                          "release, an SD 2.1-base folder or hub id, or 'bicubic')")
            local = download_if_present(name, CONFIG_NAME) or local
        if is_tvt_export(local):
            components = load_tvt_export(local, device=device, base_model=base_model)
        elif local.is_file() or (local.is_dir() and not (local / "unet").is_dir() and not (local / "model_index.json").is_file()):
            components = load_official_release(local, base_model=base_model)
        else:
            pipe = cls.from_sd(name, vae_d4=vae_d4, architecture=architecture or ("tvt" if vae_d4 is not None else "osediff"), **kwargs)
            return pipe.to(device, dtype)
        spec, extractor = _prompting(components.prompt, prompt_extractor, ram_weights, dape_weights, device)
        kwargs = {"timestep": components.timestep, **kwargs}
        pipe = cls(components.vae, components.unet, components.text_encoder, components.tokenizer, components.scheduler,
                   prompt_spec=spec, prompt_extractor=extractor, architecture=components.architecture,
                   base_model=components.base_model, **kwargs)
        return pipe.to(device, dtype)

    def save_pretrained(self, save_directory: str | Path, self_contained: bool = True) -> Path:
        """Write the export format (tvt.export). The LoRA is merged in a loaded pipeline, so the whole UNet is
        stored; ``self_contained`` also stores text encoder/tokenizer/scheduler (else they come from base_model)."""
        from .export import save_tvt_export

        if not self_contained and not self.base_model:
            raise InputError("self_contained=False needs base_model (the SD 2.1-base folder or hub id)")
        parts = dict(text_encoder=self.text_encoder, tokenizer=self.tokenizer, scheduler=self.scheduler) if self_contained else {}
        return save_tvt_export(save_directory, ce_unet=self.unet, vae=self.vae, base_model=self.base_model or "",
                               prompt=self.prompt_spec, architecture=self.architecture,
                               timestep=self.generator.timestep, full_unet=True, **parts)


def _fit_unet_macs(unet: nn.Module, factor: int) -> tuple[float, float, float]:
    """(c, a, b) of ``TVTPipeline.unet_macs`` from MAC counts at three latent sizes on a meta-device copy of ``unet``."""
    from .flops import macs_by_op

    config = getattr(unet, "config", None)
    if config is None or not hasattr(type(unet), "from_config"):
        return 0.0, 1.0, 0.0
    rows, counts = [], []
    with torch.device("meta"):
        replica = type(unet).from_config(config)
        for n in (2 * factor, 3 * factor, 4 * factor):  # multiples of the UNet factor: every level divides exactly
            z = torch.zeros(1, replica.config.in_channels, n, n)
            c = torch.zeros(1, 77, replica.config.cross_attention_dim)
            counts.append(float(sum(macs_by_op(replica, z, torch.tensor([1]), encoder_hidden_states=c).values())))
            rows.append([1.0, float(n * n), float(n * n) ** 2])
    c, a, b = torch.linalg.solve(torch.tensor(rows, dtype=torch.float64), torch.tensor(counts, dtype=torch.float64))
    return float(c), float(a), float(b)


def enable_fast_options(pipe: _SRPipeline, compile: bool = False, mode: str = "auto", channels_last: bool = False,
                        bounded_tiles: bool = False) -> _SRPipeline:
    """The command lines' fast-path keys (scripts/infer.py, scripts/eval.py): the fast path with these options and
    the "auto" SDPA order when any is set; nothing otherwise (the defaults stay as they are)."""
    if compile or channels_last or bounded_tiles:
        pipe.enable_fast_inference(compile=compile, mode=mode, channels_last=channels_last, bounded_tiles=bounded_tiles)
    return pipe


def _prompting(spec: PromptSpec, prompt_extractor, ram_weights, dape_weights, device) -> tuple[PromptSpec, PromptExtractor | None]:
    """The spec (weight paths overridden) and its extractor, as ``from_pretrained`` documents."""
    spec = dataclasses.replace(spec, **{k: v for k, v in (("ram_weights", ram_weights), ("dape_weights", dape_weights)) if v})
    if prompt_extractor == "auto":
        return spec, (None if spec.extractor == "fixed" else build_prompt_extractor(spec, str(device)))
    return spec, prompt_extractor


# ---------------------------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------------------------
@dataclass
class FolderResult:
    """What ``super_resolve_folder`` did: the output ``folder``, the images ``written`` there, the inputs
    ``skipped`` (output exists) and ``failed`` (input, one-line reason); ``seconds``: time on written images."""

    folder: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0


def super_resolve_folder(pipe: _SRPipeline, inputs: str | Path | Sequence[str | Path], out_dir: str | Path, *,
                         upscale: float = 4, overwrite: bool = False, seed: int = 0, progress: bool = True,
                         batch_size: int = 1, **call_kwargs) -> FolderResult:
    """Super-resolve every input image into ``out_dir/<input stem>.png`` (written atomically) with ``pipe``.

    pipe: a TVTPipeline or BicubicPipeline (``TVTPipeline.from_pretrained``).
    inputs: an image file, a folder (non-recursive; other files are skipped with a warning), a glob, or a list
        of image paths.
    out_dir: created when absent; an existing file there is an InputError.
    upscale: 1 to 4. overwrite: replace existing outputs (else they are skipped and counted).
    seed: every image's VAE posterior sample is drawn from a generator seeded with it, so an image gives the
        same output whatever else is in the folder (seed 0 = the pipeline's default).
    progress: a tqdm bar. call_kwargs: passed to ``pipe(...)``: prompt, tile_size, tile_overlap, vae_tile_size,
        color_fix.
    batch_size: > 1 runs consecutive images of one size together, up to that many per call (the same outputs up
        to float rounding), reading the next images and writing the last ones in threads meanwhile.
    Errors of one image (unreadable, too small, non-finite output, an output name used twice) are logged and
    listed in ``failed``; the run goes on. Returns a FolderResult.
    """
    check_upscale(upscale)
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output {out_dir} is a file: give a folder for the results")
    files = _image_inputs(inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = FolderResult(out_dir)
    claimed: dict[Path, Path] = {}
    todo: list[tuple[Path, Path]] = []  # (input, output) to run
    for path in files:
        target = out_dir / f"{path.stem}.png"
        if target in claimed:
            _failed(result, path, f"output name {target.name} already used by {claimed[target].name}; rename one")
            continue
        claimed[target] = path
        if target.exists() and not overwrite:
            logger.warning("%s exists, skipping (overwrite to replace it)", target)
            result.skipped.append(path)
            continue
        todo.append((path, target))
    bar = tqdm(total=len(todo), desc="super-resolve", unit="img", disable=not progress)
    with bar:
        if batch_size > 1:
            _run_batches(pipe, todo, result, bar, batch_size, dict(upscale=upscale, **call_kwargs), seed)
            return result
        for path, target in todo:
            try:
                t0 = time.perf_counter()
                sr = pipe(path, upscale=upscale, generator=torch.Generator().manual_seed(seed), **call_kwargs).images[0]
                save_image(sr, target)
                result.seconds += time.perf_counter() - t0
                result.written.append(target)
            except IMAGE_ERRORS as err:
                _failed(result, path, err)
            bar.update()
    return result


IMAGE_ERRORS = (TVTError, FloatingPointError, OSError, ValueError)  # errors of one image: logged, the run goes on


def _failed(result: FolderResult, path: Path, err: Exception | str) -> None:
    result.failed.append((path, str(err).splitlines()[0]))
    logger.error("%s: %s", path.name, result.failed[-1][1])


def _run_batches(pipe, todo: list[tuple[Path, Path]], result: FolderResult, bar, batch_size: int, call_kwargs: dict,
                 seed: int) -> None:
    """``super_resolve_folder``'s batch_size > 1: chunks of ``batch_size`` inputs, read ahead and written behind in
    threads (PIL releases the GIL while decoding and encoding), each chunk run in groups of one image size."""
    t0 = time.perf_counter()
    chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        def read(chunk):
            return [(path, target, pool.submit(image_to_tensor, path)) for path, target in chunk]

        def finish(saves):  # wait for the writes of a chunk
            for path, target, future in saves:
                try:
                    future.result()
                    result.written.append(target)
                except IMAGE_ERRORS as err:
                    _failed(result, path, err)
                bar.update()

        reads, saves = read(chunks[0]) if chunks else [], []
        for i in range(len(chunks)):
            loaded, reads = reads, read(chunks[i + 1]) if i + 1 < len(chunks) else []
            images = []
            for path, target, future in loaded:
                try:
                    images.append((path, target, future.result()))
                except IMAGE_ERRORS as err:
                    _failed(result, path, err)
                    bar.update()
            done = []
            for size in dict.fromkeys(tuple(t.shape) for _, _, t in images):
                done += _restore_group(pipe, [im for im in images if tuple(im[2].shape) == size], result, bar,
                                       call_kwargs, seed)
            finish(saves)
            saves = [(path, target, pool.submit(save_image, sr, target)) for path, target, sr in done]
        finish(saves)
    result.seconds += time.perf_counter() - t0


def _restore_group(pipe, group: list, result: FolderResult, bar, call_kwargs: dict, seed: int) -> list:
    """[(input, output, (3, h, w))] of one size -> [(input, output, sr (3, H, W))]; on an error, one by one, so it
    fails only the image it comes from."""
    generators = [torch.Generator().manual_seed(seed) for _ in group]  # per image: as when run alone
    try:
        out = pipe(torch.stack([t for _, _, t in group]), generator=generators, output_type="pt", **call_kwargs).images
        return [(path, target, sr) for (path, target, _), sr in zip(group, out)]
    except IMAGE_ERRORS as err:
        if len(group) == 1:
            _failed(result, group[0][0], err)
            bar.update()
            return []
    return [done for item in group for done in _restore_group(pipe, [item], result, bar, call_kwargs, seed)]


def _image_inputs(inputs) -> list[Path]:
    """Image files of ``inputs`` (see ``super_resolve_folder``); non-image files are skipped with a warning."""
    if not isinstance(inputs, (str, Path)):
        return [Path(p) for p in inputs]
    files, source = list_images(inputs), Path(inputs)
    others = sorted(p.name for p in source.iterdir() if p.is_file() and not is_image_file(p)) if source.is_dir() else []
    if source.is_file() and not is_image_file(source):
        others, files = [source.name], []
    if others:
        logger.warning("skipping %d non-image file(s): %s", len(others), ", ".join(others[:5]) + (" ..." if len(others) > 5 else ""))
    if not files:
        logger.warning("no images found in %s", inputs)
    return files


__all__ = ["TVTPipeline", "BicubicPipeline", "TVTPipelineOutput", "ImageSizeError", "FolderResult", "FastInference",
           "super_resolve_folder", "check_upscale", "resize_bicubic", "pad_to_multiple", "TILE_OUTPUT_PX",
           "OVERLAP_OUTPUT_PX", "BOUNDED_TILE_OUTPUT_PX", "BOUNDED_OVERLAP_OUTPUT_PX", "FAST_VAE_TILE_OUTPUT_PX",
           "MAX_UPSCALE", "DTYPES", "COMPILE_MODES", "enable_fast_options"]
