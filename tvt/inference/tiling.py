"""Latent and VAE tiling of TVTPipeline: tile sizes from the call's arguments, and the fast path's MAC-fitted choice.

Tile sizes are given in INPUT (LR) pixels and converted to latent pixels. The default tiles cover the same image
area in both official codes: OSEDiff latent 96/32 (x8 VAE) and TVT inference_tile.py latent 192/64 (x4 VAE),
i.e. 768/256 output pixels (192/64 input pixels at x4).

The fast path's "bounded" latent tiles: 384 / 64 output pixels (TVT latent 96 / 16, so the CE-UNet's
full-resolution first level attends over at most 96 x 96 = 9,216 tokens per tile, the token count of OSEDiff's
official 96 x 96 latent tile, where TVT's official 192 x 192 tile has 36,864), used where they take fewer UNet
MACs (attention included) than the official tiling, several tiles per UNet call.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ..models.generator import Tiling, tile_starts

TILE_OUTPUT_PX = 768
OVERLAP_OUTPUT_PX = 256
BOUNDED_TILE_OUTPUT_PX = 384
BOUNDED_OVERLAP_OUTPUT_PX = 64
FAST_VAE_TILE_OUTPUT_PX = 1024  # the fast path runs the VAE whole up to 1024 x 1024 outputs


class TilingMixin:
    """TVTPipeline's tiling. Uses the pipeline's ``unet``, ``vae``, ``generator``, ``unet_factor``, ``vae_factor``
    and ``fast`` (the fast path's options, or None)."""

    _unet_macs_fit: tuple[float, float, float] | None = None

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
            self._unet_macs_fit = fit_unet_macs(self.unet, self.unet_factor)
        c, a, b = self._unet_macs_fit
        return c + a * h * w + b * (h * w) ** 2

    def tiling_macs(self, h: int, w: int, tile: int, overlap: int) -> float:
        """UNet MACs of denoising an h x w latent in ``tile`` / ``overlap`` tiles (0 = whole)."""
        if tile <= 0 or (h <= tile and w <= tile):
            return self.unet_macs(h, w)
        th, tw = min(tile, h), min(tile, w)
        return len(tile_starts(h, th, overlap)) * len(tile_starts(w, tw, overlap)) * self.unet_macs(th, tw)

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

    def tiling_for(self, height: int, width: int, upscale: float = 4, tile_size: int | None = None,
                   tile_overlap: int | None = None, vae_tile_size: int | None = None) -> Tiling:
        """The generator's Tiling for a padded (height, width) output, passed to that call alone (no state is set).
        Arguments as ``__call__``'s; vae_tile_size None = the latent tile in pixels (with bounded_tiles: at least
        FAST_VAE_TILE_OUTPUT_PX)."""
        vf = self.vae_factor
        tile, overlap = self.latent_tiling(tile_size, tile_overlap, upscale, latent_size=(height // vf, width // vf))
        if vae_tile_size is None:
            bounded = self.fast is not None and self.fast.bounded_tiles and tile > 0
            vae_tile_size = max(tile * vf, FAST_VAE_TILE_OUTPUT_PX) if bounded else tile * vf
        return Tiling(tile, overlap, self.fast.tile_batch if self.fast else 1, max(vae_tile_size, 0))


def fit_unet_macs(unet: nn.Module, factor: int) -> tuple[float, float, float]:
    """(c, a, b) of ``TilingMixin.unet_macs`` from MAC counts at three latent sizes on a meta-device copy of ``unet``."""
    from ..flops import macs_by_op

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
