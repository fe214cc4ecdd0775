"""TVTPipeline: inference for images of any size with TVT (VAE-D4 + CE-UNet) or the OSEDiff architecture
(VAE-D8 + SD UNet). Defaults follow the official inference (TVT/inferences/inference.py):

    lr (B, 3, h, w) in [0, 1]
      -> PIL bicubic to the output size (H, W) = (h * upscale, w * upscale); outputs whose short side is below
         process_size (512) are made at that size and resized back (official: the LR is enlarged first)
      -> reflect-pad H, W to a multiple of the stride (VAE factor x UNet factor), [-1, 1]
      -> prompt per image: the model's PromptSpec (official: DAPE tags of the upscaled LR + "clean, ...")
      -> OneStepGenerator.encode            posterior sample, seeded (VAE tiling above vae_tile_size pixels)
      -> OneStepGenerator.denoise           at the model's timestep (TVT: 1); latent tiles, Gaussian blending
      -> OneStepGenerator.decode, crop to (H, W), colour fix (AdaIN) against the upsampled LR
      -> (B, 3, H, W) in [0, 1]

Elsewhere: tiling in tvt.inference.tiling, the opt-in fast path in tvt.inference.fast, what from_pretrained loads
in tvt.inference.pretrained; the one-step math in tvt.models.generator; the export folder in tvt.export.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..colorfix import apply_color_fix
from ..errors import InputError
from ..models.generator import GENERATOR_TIMESTEP, WHOLE, OneStepGenerator, Tiling
from ..models.loading import load_text_parts
from ..models.sd21 import downscale_factor
from ..prompts import PromptExtractor, PromptSpec, encode_prompts
from .base import MAX_OUTPUT_PIXELS, MIN_SIDE, BicubicPipeline, TVTPipelineOutput, _SRPipeline
from .fast import FastPathMixin
from .pretrained import find_components, prompting
from .resize import pad_to_multiple, resize_bicubic
from .tiling import TilingMixin

logger = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PROCESS_SIZE = 512  # official inference: outputs with a shorter side are made at this size and resized back


class TVTPipeline(FastPathMixin, TilingMixin, _SRPipeline):
    """One-step Real-ISR for TVT (VAE-D4 + CE-UNet) and the OSEDiff architecture (VAE-D8 + SD UNet).

    Build with ``from_pretrained`` (export folder, official weights, SD 2.1 folder, "bicubic"),
    ``from_sd`` (untrained, from SD 2.1 + a VAE-D4) or ``from_components``.
    """

    def __init__(self, vae: nn.Module, unet: nn.Module, text_encoder: nn.Module, tokenizer, scheduler,
                 prompt_spec: PromptSpec | None = None, architecture: str | None = None, timestep: int = GENERATOR_TIMESTEP,
                 base_model: str | None = None, prompt_extractor: PromptExtractor | None = None,
                 sample_posterior: bool = True, upsampling: str = "pil", process_size: int = PROCESS_SIZE,
                 min_side: int = MIN_SIDE, max_output_pixels: int = MAX_OUTPUT_PIXELS):
        """prompt_spec: how the model is prompted (tvt.prompts; recorded in exports); prompt_extractor: the tagger of
        that spec (None: the spec's fixed ``tags``). sample_posterior, upsampling ("pil" bicubic), process_size:
        the official inference's choices (module docstring)."""
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
        self.fast = None  # the fast path's options (tvt.inference.fast.FastInference); None = off
        self._unet_macs_fit = None

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
        """Output pixels are padded to a multiple of this (``stride_of``)."""
        return stride_of(self.generator)

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

        s = self.stride
        tiling = self.tiling_for(-(-work[0] // s) * s, -(-work[1] // s) * s, work[0] / lr.shape[-2], tile_size,
                                 tile_overlap, vae_tile_size)
        sr = restore_upsampled(self.generator, lr_up, emb, s, tiling, color_fix, generator)
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
            for TVT, 96 / 32 for OSEDiff; both 192 / 64 input pixels at x4); 0 = no tiling. For this call only
            (``tiling_for``: passed to the generator, nothing is kept).
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
        """An UNTRAINED pipeline from SD 2.1-base for any architecture of tvt.models.architectures: its UNet built
        from the SD UNet (TVT: CE-UNet), its VAE from SD (OSEDiff, S2) or ``vae_d4`` (a trained VAE's folder or
        module: VAE-D4, V1/V2, S3's VAE-D8C8). For tests, demos and benchmarks."""
        from ..models.architectures import get_architecture
        from ..models.ce_unet import load_sd_unet

        arch = get_architecture(architecture)
        te, tok, sched = load_text_parts(sd_path)
        vae = arch.load_vae(sd_path, vae_d4)
        unet = arch.build_unet(load_sd_unet(sd_path), copy_sd=False)
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
        name = str(path_or_hub_id)
        if name == "bicubic" or architecture == "bicubic":
            return BicubicPipeline(**{k: v for k, v in kwargs.items() if k in ("upsampling", "min_side", "max_output_pixels")})
        components = find_components(name, device, base_model)
        if components is None:
            pipe = cls.from_sd(name, vae_d4=vae_d4, architecture=architecture or ("tvt" if vae_d4 is not None else "osediff"), **kwargs)
            return pipe.to(device, dtype)
        spec, extractor = prompting(components.prompt, prompt_extractor, ram_weights, dape_weights, device)
        kwargs = {"timestep": components.timestep, **kwargs}
        pipe = cls(components.vae, components.unet, components.text_encoder, components.tokenizer, components.scheduler,
                   prompt_spec=spec, prompt_extractor=extractor, architecture=components.architecture,
                   base_model=components.base_model, **kwargs)
        return pipe.to(device, dtype)

    def save_pretrained(self, save_directory: str | Path, self_contained: bool = True) -> Path:
        """Write the export format (tvt.export). The LoRA is merged in a loaded pipeline, so the whole UNet is
        stored; ``self_contained`` also stores text encoder/tokenizer/scheduler (else they come from base_model)."""
        from ..export import save_tvt_export

        if not self_contained and not self.base_model:
            raise InputError("self_contained=False needs base_model (the SD 2.1-base folder or hub id)")
        parts = dict(text_encoder=self.text_encoder, tokenizer=self.tokenizer, scheduler=self.scheduler) if self_contained else {}
        return save_tvt_export(save_directory, ce_unet=self.unet, vae=self.vae, base_model=self.base_model or "",
                               prompt=self.prompt_spec, architecture=self.architecture,
                               timestep=self.generator.timestep, full_unet=True, **parts)


def stride_of(generator: OneStepGenerator) -> int:
    """Output pixels are padded to a multiple of this: VAE factor x UNet factor (8 x 8 for SD, 4 x 16 for TVT)."""
    cfg = getattr(generator.unet, "config", None)
    return generator.scale_factor * (downscale_factor(cfg) if cfg is not None else 1)


def restore_upsampled(generator: OneStepGenerator, lr_up: torch.Tensor, prompt_embeds: torch.Tensor, stride: int,
                      tiling: Tiling = WHOLE, color_fix: str | None = "adain",
                      rng: torch.Generator | list[torch.Generator] | None = None) -> torch.Tensor:
    """The pipeline's restoration of an upsampled LR, shared with ISR validation: lr_up (B, 3, H, W) in [0, 1] ->
    reflect-pad to ``stride``, encode / denoise / decode in ``tiling``, crop, colour fix against lr_up ->
    (B, 3, H, W) in [0, 1]. ``rng`` draws the posterior sample; None = a CPU generator seeded with 0 per image."""
    H, W = lr_up.shape[-2:]
    x = pad_to_multiple(lr_up * 2 - 1, stride)  # (B, 3, H', W') in [-1, 1]
    if rng is None:  # seeded per image: an image gives the same output alone or in a batch
        rng = [torch.Generator().manual_seed(0) for _ in range(len(x))]
    z = generator.encode(x, generator=rng, tiling=tiling)  # (B, 4, H'/f, W'/f)
    z0 = generator.denoise(z, prompt_embeds, tiling)
    sr = generator.decode(z0, tiling)[..., :H, :W].float()  # (B, 3, H, W) in [-1, 1]
    if not torch.isfinite(sr).all():
        raise FloatingPointError(f"non-finite output at dtype {generator.unet.dtype}; run in float32/bfloat16 or keep "
                                 "the VAE in fp32")
    return apply_color_fix((sr + 1) / 2, lr_up, color_fix).clamp(0, 1)
