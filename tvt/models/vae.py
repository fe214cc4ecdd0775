"""VAE-D4 (paper Sec. 3.2, Fig. 3) and the SD 2.1 VAE-D8 loader.

VAE-D4 is an AutoencoderKL with 3 stages (128/256/256 channels, 2 ResBlocks each), 4 latent
channels and *no* middle stage, so a 512x512 image maps to a 4x128x128 latent. diffusers has no
switch to drop the mid block, so we subclass AutoencoderKL and replace its mid blocks with an
identity: everything else (DiagonalGaussian posterior, tiling, slicing, save/load) is diffusers'.

    x (B, 3, H, W) in [-1, 1] --encode--> latent (B, 4, H/4, W/4) --decode--> (B, 3, H, W)
"""
from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from diffusers import AutoencoderKL
from diffusers.configuration_utils import register_to_config

from .loading import require_pretrained
from .sd21 import SD_SCALING_FACTOR, downscale_factor


class _NoMidBlock(nn.Module):
    """Stands in for diffusers' UNetMidBlock2D when the architecture has no middle stage."""

    def forward(self, sample: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        return sample


class AutoencoderKLD4(AutoencoderKL):
    """AutoencoderKL with an optional middle stage (``use_mid_block``); 3 stages give a 4x downsampling VAE."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",) * 3,
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",) * 3,
        block_out_channels: tuple[int, ...] = (128, 256, 256),
        layers_per_block: int = 2,
        act_fn: str = "silu",
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int = 512,
        scaling_factor: float = SD_SCALING_FACTOR,
        shift_factor: float | None = None,
        latents_mean: tuple[float] | None = None,
        latents_std: tuple[float] | None = None,
        force_upcast: bool = False,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        mid_block_add_attention: bool = True,
        use_mid_block: bool = False,
    ):
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            down_block_types=down_block_types,
            up_block_types=up_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            act_fn=act_fn,
            latent_channels=latent_channels,
            norm_num_groups=norm_num_groups,
            sample_size=sample_size,
            scaling_factor=scaling_factor,
            shift_factor=shift_factor,
            latents_mean=latents_mean,
            latents_std=latents_std,
            force_upcast=force_upcast,
            use_quant_conv=use_quant_conv,
            use_post_quant_conv=use_post_quant_conv,
            mid_block_add_attention=mid_block_add_attention,
        )
        if not use_mid_block:
            self.encoder.mid_block = _NoMidBlock()
            self.decoder.mid_block = _NoMidBlock()

    @property
    def downscale_factor(self) -> int:
        return downscale_factor(self.config)


# ---------------------------------------------------------------------------------------------
# Architectures: the paper's D4, the Table 5 ablations V1/V2 and Table 7's D8C8
# ---------------------------------------------------------------------------------------------
VAE_VARIANTS: dict[str, dict] = {
    # name: AutoencoderKLD4 kwargs
    "d4": dict(block_out_channels=(128, 256, 256), use_mid_block=False),
    "v1": dict(block_out_channels=(128, 256, 512), use_mid_block=True),
    "v2": dict(block_out_channels=(128, 256, 512), use_mid_block=False),
    # Table 7's S3: SD's VAE-D8 layout with an 8-channel latent (tvt.models.latent_channels), trained by the same stages
    "d8c8": dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                 up_block_types=("UpDecoderBlock2D",) * 4, use_mid_block=True, latent_channels=8),
}


def vae_variant_of(config) -> str | None:
    """The VAE_VARIANTS name whose layout ``config`` has: stages, whether the last stage keeps the width of the one
    before (D4: 256/256; V1, V2: 256/512), mid block, latent channels. Absolute widths are free, so tiny test VAEs
    match too. None when none matches."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)

    def layout(widths, mid, latent):
        widths = list(widths)
        return len(widths), len(widths) > 1 and widths[-1] == widths[-2], bool(mid), int(latent)

    ours = layout(get("block_out_channels", ()), get("use_mid_block", False), get("latent_channels", 4))
    for name, kw in VAE_VARIANTS.items():
        if layout(kw["block_out_channels"], kw["use_mid_block"], kw.get("latent_channels", 4)) == ours:
            return name
    return None


def build_vae_d4(variant: str = "d4", **overrides) -> AutoencoderKLD4:
    """A randomly initialised VAE-D4 (or ablation V1/V2); ``overrides`` change any config field."""
    if variant not in VAE_VARIANTS:
        raise ValueError(f"unknown VAE variant '{variant}', choose from {sorted(VAE_VARIANTS)}")
    return AutoencoderKLD4(**{**VAE_VARIANTS[variant], **overrides})


def load_vae_d4(path: str | Path, **kwargs) -> AutoencoderKLD4:
    """Load a VAE-D4 folder saved with ``save_pretrained`` (config.json + safetensors)."""
    return require_pretrained(AutoencoderKLD4, path, what="VAE-D4", **kwargs)


def load_vae_d8(path_or_hub_id: str | Path, subfolder: str | None = "vae", **kwargs) -> AutoencoderKL:
    """SD 2.1's VAE-D8 from a diffusers model folder (``<sd>/vae``) or a hub id."""
    return require_pretrained(AutoencoderKL, path_or_hub_id, what="SD 2.1 VAE-D8", subfolder=subfolder, **kwargs)


def enable_vae_tiling(vae: AutoencoderKL, tile_px: int) -> None:
    """diffusers' VAE tiling (``vae.enable_tiling()``) with ``tile_px`` x ``tile_px`` image tiles; 0 = off.

    diffusers 0.42's ``enable_tiling()`` takes no size: the tiles are the ``tile_sample_min_size`` (image) and
    ``tile_latent_min_size`` (latent) attributes, which must agree, so they are set here together. The tile is
    rounded down to a multiple of 4 latent pixels: diffusers steps by 3/4 of a tile and blends 1/4, and other
    sizes give latents of the wrong size. Exact when the image fits one tile.
    """
    if tile_px <= 0:
        vae.disable_tiling()
        return
    f = downscale_factor(vae.config)
    tile_px = max(4 * f, tile_px // (4 * f) * (4 * f))
    vae.tile_sample_min_size, vae.tile_latent_min_size = tile_px, tile_px // f
    vae.enable_tiling()


_TILING_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()


@contextmanager
def vae_tiling(vae: AutoencoderKL, tile_px: int) -> Iterator[None]:
    """``enable_vae_tiling(vae, tile_px)`` for the calls inside only. diffusers keeps tiling as VAE attributes, so
    they are set on entry and put back on exit, under a lock per VAE: one call's tiles never reach another call,
    nested or in another thread (which waits for the VAE meanwhile)."""
    with _TILING_LOCKS.setdefault(vae, threading.RLock()):
        saved = (vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size)
        enable_vae_tiling(vae, tile_px)
        try:
            yield
        finally:
            vae.use_tiling, vae.tile_sample_min_size, vae.tile_latent_min_size = saved
