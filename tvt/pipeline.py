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

The one-step math lives in tvt.models.generator; the export folder format in tvt.export; colour fix in
tvt.colorfix; prompts in tvt.prompts. Tile sizes are given in INPUT (LR) pixels; we convert to latent pixels.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .colorfix import apply_color_fix
from .errors import InputError
from .io import pil_to_tensor, read_image, tensor_to_pil
from .models.generator import OneStepGenerator
from .prompts import DAPE_WEIGHTS, RAM_WEIGHTS, PromptExtractor, PromptSpec, encode_prompts, official_inference_prompt

logger = logging.getLogger(__name__)

# Default tiles cover the same image area in both official codes: OSEDiff latent 96/32 (x8 VAE) and
# TVT inference_tile.py latent 192/64 (x4 VAE), i.e. 768/256 output pixels (192/64 input pixels at x4).
TILE_OUTPUT_PX = 768
OVERLAP_OUTPUT_PX = 256


class ImageSizeError(InputError):
    """An input image is too small or would give an output too large for the configured limits."""


@dataclass
class TVTPipelineOutput:
    """``images``: list of PIL images ("pil"), (B, H, W, 3) float array or list ("np"), (B, 3, H, W) tensor or list ("pt")."""

    images: Any


# ---------------------------------------------------------------------------------------------
# Inputs and outputs
# ---------------------------------------------------------------------------------------------
def _pil_to_rgb(img: Image.Image, name: str = "image") -> Image.Image:
    if img.mode != "RGB":
        note = " (alpha dropped)" if "A" in img.mode else ""
        logger.info("%s: converting %s to RGB%s", name, img.mode, note)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr / (65535.0 if arr.max() > 255 else 255.0) * 255 + 0.5, 0, 255).astype(np.uint8))
    return img.convert("RGB")


def _array_to_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(H, W), (H, W, C) arrays or (C, H, W) tensors -> (3, H, W) float in [0, 1]."""
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
        t = t.float() / 255.0 if x.dtype == np.uint8 else t.float()
        t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    else:
        t = x.detach().float()
        t = t[None] if t.ndim == 2 else t
    if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
        raise ValueError(f"expected an image with 1, 3 or 4 channels, got shape {tuple(x.shape)}")
    if t.shape[0] == 1:
        logger.info("converting a grayscale image to RGB")
        t = t.expand(3, -1, -1)
    elif t.shape[0] == 4:
        logger.info("converting an RGBA image to RGB (alpha dropped)")
        t = t[:3]
    return t.clamp(0, 1).contiguous()


def to_image_tensors(images) -> list[torch.Tensor]:
    """A path, PIL image, array, (C, H, W)/(B, C, H, W) tensor in [0, 1], or a list of these -> list of (3, h, w)."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return [_array_to_tensor(x) for x in images]
    if isinstance(images, (str, Path, Image.Image, np.ndarray, torch.Tensor)):
        images = [images]
    out = []
    for img in images:
        if isinstance(img, (str, Path)):
            out.append(pil_to_tensor(read_image(img)))  # ImageReadError for unreadable files
            with Image.open(img) as probe:
                if probe.mode != "RGB":
                    logger.info("%s: converting %s to RGB%s", Path(img).name, probe.mode, " (alpha dropped)" if "A" in probe.mode else "")
        elif isinstance(img, Image.Image):
            out.append(pil_to_tensor(_pil_to_rgb(img)))
        else:
            out.append(_array_to_tensor(img))
    return out


def _format(outputs: list[torch.Tensor], output_type: str):
    """list of (3, H, W) in [0, 1] -> the requested type."""
    same = len({tuple(o.shape) for o in outputs}) == 1
    if output_type == "pil":
        return [tensor_to_pil(o) for o in outputs]
    if output_type == "pt":
        return torch.stack(outputs) if same else outputs
    if output_type == "np":
        arrs = [o.permute(1, 2, 0).cpu().numpy() for o in outputs]
        return np.stack(arrs) if same else arrs
    raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got '{output_type}'")


# ---------------------------------------------------------------------------------------------
# Tiling (latent space), padding
# ---------------------------------------------------------------------------------------------
def gaussian_weights(h: int, w: int, var: float = 0.01) -> torch.Tensor:
    """(1, 1, h, w) tile weights peaking at the centre (OSEDiff's choice: var 0.01 of the tile size squared)."""
    y = torch.arange(h, dtype=torch.float64)
    x = torch.arange(w, dtype=torch.float64)
    wy = torch.exp(-((y - (h - 1) / 2) ** 2) / (h * h) / (2 * var))
    wx = torch.exp(-((x - (w - 1) / 2) ** 2) / (w * w) / (2 * var))
    return (wy[:, None] * wx[None, :]).float()[None, None]


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering [0, n) with at least ``overlap``; the last one ends at n."""
    if n <= tile:
        return [0]
    step = tile - overlap
    return list(range(0, n - tile, step)) + [n - tile]


def tiled_apply(fn: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    """Apply a size-preserving ``fn`` on overlapping tiles of z (B, C, h, w) and blend with Gaussian weights.

    The blend is a per-pixel convex combination (weights normalised to sum 1), so a spatially
    equivariant ``fn`` gives the untiled result; when z fits one tile, ``fn(z)`` is returned as is.
    """
    h, w = z.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return fn(z)
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap must be in [0, tile={tile}), got {overlap}")
    th, tw = min(tile, h), min(tile, w)
    weight = gaussian_weights(th, tw).to(z.device)
    out = torch.zeros(z.shape, dtype=torch.float32, device=z.device)
    wsum = torch.zeros((1, 1, h, w), dtype=torch.float32, device=z.device)
    for y in tile_starts(h, th, overlap):
        for x in tile_starts(w, tw, overlap):
            pred = fn(z[..., y : y + th, x : x + tw])
            out[..., y : y + th, x : x + tw] += pred.float() * weight
            wsum[..., y : y + th, x : x + tw] += weight
    return (out / wsum).to(z.dtype)


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
        raise ValueError(f"upsampling must be 'pil' or 'torch', got '{method}'")
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

    def __init__(self, min_side: int = 8, max_output_pixels: int = 8192 * 8192):
        self.min_side = min_side
        self.max_output_pixels = max_output_pixels

    def output_size(self, h: int, w: int, upscale: float) -> tuple[int, int]:
        if upscale <= 0:
            raise ValueError(f"upscale must be > 0, got {upscale}")
        H, W = round(h * upscale), round(w * upscale)
        if min(h, w) < self.min_side:
            raise ImageSizeError(f"input {w}x{h} is too small: both sides must be >= {self.min_side} pixels")
        if H * W > self.max_output_pixels:
            raise ImageSizeError(
                f"output {W}x{H} ({H * W / 1e6:.1f} MP) exceeds max_output_pixels={self.max_output_pixels / 1e6:.1f} MP; "
                "lower --upscale, split the image, or raise the limit"
            )
        return H, W

    upsampling = "pil"

    def upsample(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, 3, h, w) [0, 1] -> (B, 3, *size): ``resize_bicubic`` with this pipeline's ``upsampling``."""
        return resize_bicubic(lr, size, self.upsampling)

    @torch.inference_mode()
    def __call__(self, images, prompt: str | Sequence[str] | None = None, upscale: float = 4, output_type: str = "pil",
                 **kwargs) -> TVTPipelineOutput:
        tensors = to_image_tensors(images)
        prompts = [prompt] * len(tensors) if prompt is None or isinstance(prompt, str) else list(prompt)
        if len(prompts) != len(tensors):
            raise ValueError(f"{len(prompts)} prompts for {len(tensors)} images")
        sizes = [self.output_size(t.shape[-2], t.shape[-1], upscale) for t in tensors]  # check all before work
        if isinstance(images, torch.Tensor) and images.ndim == 4 and len(set(prompts)) == 1:
            # a (B, 3, h, w) batch runs as one batch; lists run image by image (bounded memory, any sizes)
            outs = list(self._restore(torch.stack(tensors), sizes[0], prompts[0], **kwargs).cpu())
        else:
            outs = [self._restore(t[None], size, p, **kwargs)[0].cpu() for t, size, p in zip(tensors, sizes, prompts)]
        return TVTPipelineOutput(images=_format(outs, output_type))

    def _restore(self, lr, size, prompt, **kwargs):
        raise NotImplementedError

    def to(self, device=None, dtype=None):
        return self


class BicubicPipeline(_SRPipeline):
    """The bicubic baseline through the same API (prompt, tiling and colour fix do not apply)."""

    architecture = "bicubic"

    def _restore(self, lr, size, prompt=None, **_):
        return self.upsample(lr.float(), size)

    def __init__(self, upsampling: str = "pil", **kwargs):
        super().__init__(**kwargs)
        self.upsampling = upsampling


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
        super().__init__(min_side=min_side, max_output_pixels=max_output_pixels)
        self.vae, self.unet, self.text_encoder, self.tokenizer, self.scheduler = vae, unet, text_encoder, tokenizer, scheduler
        for m in (vae, unet, text_encoder):
            m.eval().requires_grad_(False)
        self.generator = OneStepGenerator(vae, unet, scheduler.alphas_cumprod, timestep=timestep,
                                          sample_posterior=sample_posterior)
        f = self.generator.scale_factor
        self.architecture = architecture or ("tvt" if f == 4 else "osediff")
        self.prompt_spec = prompt_spec or PromptSpec()
        self.base_model = base_model
        self.prompt_extractor = prompt_extractor
        self.upsampling, self.process_size = upsampling, process_size
        self._embeds: dict[str, torch.Tensor] = {}

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
        return 2 ** (len(cfg.block_out_channels) - 1) if cfg is not None else 1

    @property
    def stride(self) -> int:
        """Output pixels are padded to a multiple of this."""
        return self.vae_factor * self.unet_factor

    # ----- device / precision ---------------------------------------------------------------
    def to(self, device=None, dtype: torch.dtype | None = None, upcast_vae: bool | None = None) -> "TVTPipeline":
        """Move models; ``upcast_vae`` (default: True for fp16) keeps the VAE in fp32 against NaN/black images."""
        if device is not None:
            self.generator.to(device)  # moves the UNet, VAE and alphas_cumprod (kept fp32)
            self.text_encoder.to(device)
            self._embeds.clear()
        if dtype is not None and (self.unet.dtype != dtype or self.vae.dtype not in (dtype, torch.float32)):
            upcast = dtype == torch.float16 if upcast_vae is None else upcast_vae
            self.unet.to(dtype=dtype)
            self.text_encoder.to(dtype=dtype)
            self.vae.to(dtype=torch.float32 if upcast else dtype)
            if upcast and dtype != torch.float32:
                logger.info("VAE kept in float32 (fp16 VAE decoders overflow into NaN/black images)")
            self._embeds.clear()
        return self

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

    def latent_tiling(self, tile_size: int | None, tile_overlap: int | None, upscale: float) -> tuple[int, int]:
        """Input-pixel tile size/overlap -> latent tile/overlap (tile a multiple of the UNet factor); 0 = no tiling.

        None/None = the official defaults (TVT latent 192 / 64, OSEDiff latent 96 / 32: 768 / 256 output pixels);
        a tile without an overlap overlaps by a third, as the defaults do.
        """
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
            raise ValueError(f"tile overlap ({tile_overlap} input px -> {overlap} latent) must be smaller than the tile "
                             f"({tile_size} input px -> {tile} latent)")
        return tile, overlap

    def _restore(self, lr: torch.Tensor, size: tuple[int, int], prompt: str | None = None, tile_size: int | None = None,
                 tile_overlap: int | None = None, vae_tile_size: int | None = None, color_fix: str | None = "adain",
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """lr (B, 3, h, w) [0, 1] -> sr (B, 3, H, W) [0, 1]; ``prompt`` None = the model's prompt per image."""
        H, W = size
        lr = lr.to(self.device, torch.float32)
        work = size
        if self.process_size and min(size) < self.process_size:  # official: enlarge small inputs first
            s = self.process_size / min(size)
            work = (round(H * s), round(W * s))
        lr_up = self.upsample(lr, work)  # (B, 3, H, W): the colour-fix reference too
        emb = self.encode_prompt(self.prompts_for(lr_up) if prompt is None else [prompt] * len(lr))  # (B, 77, D)

        x = pad_to_multiple(lr_up * 2 - 1, self.stride)  # (B, 3, H', W') in [-1, 1]
        scale = work[0] / lr.shape[-2]
        tile, overlap = self.latent_tiling(tile_size, tile_overlap, scale)
        self._set_vae_tiling(tile * self.vae_factor if vae_tile_size is None else vae_tile_size)

        if generator is None:  # seeded per image: an image gives the same output alone or in a batch
            generator = [torch.Generator().manual_seed(0) for _ in range(len(x))]
        z = self.generator.encode(x, generator=generator)  # (B, 4, H'/f, W'/f)
        z0 = tiled_apply(lambda zt: self.generator.denoise(zt, emb), z, tile, overlap)
        sr = self.generator.decode(z0)[..., : work[0], : work[1]].float()  # (B, 3, H, W) in [-1, 1]
        if not torch.isfinite(sr).all():
            raise FloatingPointError(f"non-finite output at dtype {self.dtype}; run in float32/bfloat16 or keep the VAE in fp32")
        sr = apply_color_fix((sr + 1) / 2, lr_up, color_fix).clamp(0, 1)
        # back to the asked size (the official code means to, but drops the result of its resize)
        return sr if work == size else resize_bicubic(sr, size, self.upsampling)

    def _set_vae_tiling(self, tile_px: int) -> None:
        """diffusers' VAE tiling with ``tile_px`` output-pixel tiles (0 = off); exact when the image fits one tile."""
        vae = self.vae
        if tile_px and tile_px > 0:
            tile_px = max(self.vae_factor, tile_px // self.vae_factor * self.vae_factor)
            vae.use_tiling = True
            vae.tile_sample_min_size = tile_px
            vae.tile_latent_min_size = tile_px // self.vae_factor
        else:
            vae.use_tiling = False

    def __call__(self, images, prompt: str | Sequence[str] | None = None, upscale: float = 4, tile_size: int | None = None,
                 tile_overlap: int | None = None, vae_tile_size: int | None = None, color_fix: str | None = "adain",
                 generator: torch.Generator | None = None, output_type: str = "pil") -> TVTPipelineOutput:
        """Super-resolve one image or a batch.

        images: path, PIL, array or tensor ((3, h, w) / (B, 3, h, w) in [0, 1]) or a list; any size >= min_side.
        prompt: None = the model's prompt (plus tags of ``prompt_extractor`` if set); a string or one per image.
        upscale: output = input x upscale (bicubic to that size, then the x1 one-step restoration).
        tile_size, tile_overlap: latent tiling in INPUT pixels; None = the official defaults (latent 192 / 64
            for TVT, 96 / 32 for OSEDiff; both 192 / 64 input pixels at x4); 0 = no tiling.
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
        """An UNTRAINED pipeline from SD 2.1-base: TVT = VAE-D4 + CE-UNet built from the SD UNet (helper-1's
        build_ce_unet_from_sd), OSEDiff = SD's VAE-D8 + SD UNet. For tests, demos and benchmarks."""
        from .export import build_ce_unet, load_base_unet, load_text_parts
        from .models.vae import load_vae_d4, load_vae_d8

        te, tok, sched = load_text_parts(sd_path)
        sd_unet = load_base_unet(sd_path)
        if architecture == "tvt":
            if vae_d4 is None:
                raise ValueError("architecture='tvt' needs vae_d4 (a VAE-D4 folder or module)")
            vae = vae_d4 if isinstance(vae_d4, nn.Module) else load_vae_d4(vae_d4)
            unet = build_ce_unet(sd_unet)
        elif architecture == "osediff":
            vae, unet = load_vae_d8(sd_path), sd_unet
        else:
            raise ValueError(f"architecture must be 'tvt' or 'osediff', got '{architecture}'")
        return cls(vae, unet, te, tok, sched, architecture=architecture, base_model=str(sd_path), **kwargs)

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, base_model: str | None = None, vae_d4=None,
                        architecture: str | None = None, prompt_extractor: str | PromptExtractor | None = "auto",
                        ram_weights: str | None = None, dape_weights: str | None = None, **kwargs):
        """Load, in this order: "bicubic" (the baseline); a TVT export folder (tvt.export); the official TVT
        release (via tvt.models.convert); an SD 2.1-base folder or hub id (untrained, see ``from_sd``).

        prompt_extractor: "auto" builds the tagger the model records (its PromptSpec: e.g. RAM + DAPE, with a clear
        error naming the weight files when they are absent; ``ram_weights``/``dape_weights`` override their paths);
        None runs without a tagger (the spec's fixed tags); or a PromptExtractor to use as is.
        """
        from .export import is_tvt_export, load_tvt_export

        name = str(path_or_hub_id)
        if name == "bicubic" or architecture == "bicubic":
            return BicubicPipeline(**{k: v for k, v in kwargs.items() if k in ("upsampling", "min_side", "max_output_pixels")})
        local = Path(name).expanduser()
        if not local.exists() and not name.startswith((".", "/", "~")) and name.count("/") == 1:
            local = _maybe_download_export(name) or local
        tagger = dict(prompt_extractor=prompt_extractor, ram_weights=ram_weights, dape_weights=dape_weights, device=device)
        if is_tvt_export(local):
            c = load_tvt_export(local, device=device, dtype=torch.float32, base_model=base_model)
            spec, extractor = _prompting(c.prompt, **tagger)
            pipe = cls(c.vae, c.unet, c.text_encoder, c.tokenizer, c.scheduler, prompt_spec=spec, prompt_extractor=extractor,
                       architecture=c.config["architecture"], timestep=c.config.get("timestep", 999),
                       base_model=c.config.get("base_model"), **kwargs)
            return pipe.to(device, dtype)
        if local.is_file() or (local.is_dir() and not (local / "unet").is_dir() and not (local / "model_index.json").is_file()):
            return _from_official(cls, local, dtype=dtype, base_model=base_model, tagger=tagger, **kwargs)
        pipe = cls.from_sd(name, vae_d4=vae_d4, architecture=architecture or ("tvt" if vae_d4 is not None else "osediff"), **kwargs)
        return pipe.to(device, dtype)

    def save_pretrained(self, save_directory: str | Path, self_contained: bool = True) -> Path:
        """Write the export format (tvt.export). The LoRA is merged in a loaded pipeline, so the whole UNet is
        stored; ``self_contained`` also stores text encoder/tokenizer/scheduler (else they come from base_model)."""
        from .export import save_tvt_export

        if not self_contained and not self.base_model:
            raise ValueError("self_contained=False needs base_model (the SD 2.1-base folder or hub id)")
        parts = dict(text_encoder=self.text_encoder, tokenizer=self.tokenizer, scheduler=self.scheduler) if self_contained else {}
        return save_tvt_export(save_directory, ce_unet=self.unet, vae=self.vae, base_model=self.base_model or "",
                               prompt=self.prompt_spec, architecture=self.architecture,
                               timestep=self.generator.timestep, full_unet=True, **parts)


def _prompting(spec: PromptSpec, prompt_extractor, ram_weights, dape_weights, device) -> tuple[PromptSpec, PromptExtractor | None]:
    """The spec (weight paths overridden) and its extractor, as ``from_pretrained`` documents."""
    import dataclasses

    from .prompts import build_prompt_extractor

    spec = dataclasses.replace(spec, **{k: v for k, v in (("ram_weights", ram_weights), ("dape_weights", dape_weights)) if v})
    if prompt_extractor == "auto":
        return spec, (None if spec.extractor == "fixed" else build_prompt_extractor(spec, str(device)))
    return spec, prompt_extractor


def _maybe_download_export(repo_id: str) -> Path | None:
    """A hub repo holding a TVT export -> local snapshot; None when it is not one or cannot be reached."""
    try:
        from huggingface_hub import hf_hub_download, snapshot_download

        from .export import CONFIG_NAME

        hf_hub_download(repo_id, CONFIG_NAME)
        return Path(snapshot_download(repo_id))
    except Exception:  # offline, no such repo, or not an export: fall through to the SD path
        return None


# The official TVT release tests at t=1 (scripts/test/test_realsr.sh --time_step 1), prompted with DAPE tags
# of the upscaled LR + "clean, high-resolution, 8k" (tvt.prompts.official_inference_prompt).
OFFICIAL_TIMESTEP = 1


def _from_official(cls, path: Path, dtype, base_model, tagger: dict, **kwargs):
    """The official TVT release (``ckp/``: model_TVT.pkl, vae.ckpt, optional TVTUNet/) via tvt.models.convert.

    ``path`` is that folder or its model_TVT.pkl; SD 2.1-base (``base_model``) gives the text encoder and,
    without TVTUNet/, the CE-UNet's SD weights.
    """
    from .export import build_ce_unet, load_base_unet, load_text_parts, merge_all_lora
    from .models.ce_unet import load_ce_unet
    from .models.convert import convert_official_vae_d4, load_official_unet
    from .models.loading import SD21_BASE, MissingWeightsError

    folder = path if path.is_dir() else path.parent
    unet_ckpt = path if path.is_file() else folder / "model_TVT.pkl"
    vae_ckpt = folder / "vae.ckpt"
    if not unet_ckpt.is_file() or not vae_ckpt.is_file():
        raise MissingWeightsError(
            f"{path} is neither a TVT export (tvt_config.json), an SD 2.1 folder (unet/), nor the official TVT release: "
            f"expected model_TVT.pkl and vae.ckpt in {folder} (download from https://huggingface.co/Joypop/TVTSR)")
    base = str(base_model or SD21_BASE)
    te, tok, sched = load_text_parts(base)
    tvt_unet = folder / "TVTUNet"
    ce_unet = load_ce_unet(tvt_unet, subfolder="unet") if (tvt_unet / "unet").is_dir() else build_ce_unet(load_base_unet(base))
    load_official_unet(unet_ckpt, ce_unet, merge=False)
    merge_all_lora(ce_unet)  # all three official adapters (diffusers leaves only the last one active)
    vae = convert_official_vae_d4(vae_ckpt)
    # the release's ckp/ holds the RAM and DAPE weights next to the model (test_realsr.sh --ram_ft_path ckp/DAPE.pth)
    spec, extractor = _prompting(official_inference_prompt(str(folder / RAM_WEIGHTS), str(folder / DAPE_WEIGHTS)), **tagger)
    kwargs = {"timestep": OFFICIAL_TIMESTEP, **kwargs}
    pipe = cls(vae, ce_unet, te, tok, sched, prompt_spec=spec, prompt_extractor=extractor, architecture="tvt",
               base_model=base, **kwargs)
    return pipe.to(tagger["device"], dtype)
