"""The one-step Real-ISR generator shared by training and inference (paper Sec. 3.3, Fig. 2b).

    lr_up (B, 3, H, W) in [-1, 1]   bicubic-upsampled LR
      -> encode   z  (B, 4, H/f, W/f)          f = 4 for VAE-D4 (TVT), 8 for VAE-D8 (OSEDiff)
      -> denoise  z0 = (z - sqrt(1 - a_t) * eps(z, t, c)) / sqrt(a_t),  t = 1
      -> decode   sr (B, 3, H, W) in [-1, 1]

t = 1: Sec. 3.3, under Eq. (5), "the time step is set to 1 in our work" (official train.sh and
test_realsr.sh: --time_step 1). At t = 1 the map starts near the identity on the LR latent
(x0 = 1.0009 z - 0.041 eps for SD 2.1's schedule); t stays a constructor argument / config key.

``denoise`` is exactly one DDPMScheduler.step with a single inference step (its prev_t is < 0, so the
step returns the predicted x0); we write the formula out so no scheduler state is involved.
The same class runs TVT (VAE-D4 + CE-UNet) and the OSEDiff baseline (VAE-D8 + SD UNet).

Large images: ``enable_tiling(tile, overlap)`` runs ``denoise`` on overlapping latent tiles blended with
Gaussian weights (OSEDiff's / TVT inference_tile.py's scheme); VAE tiling is diffusers' own
(tvt.models.vae.enable_vae_tiling).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .sd21 import downscale_factor


class OneStepGenerator(nn.Module):
    def __init__(self, vae: nn.Module, unet: nn.Module, alphas_cumprod: torch.Tensor, timestep: int = 1,
                 sample_posterior: bool = True):
        super().__init__()
        self.vae = vae
        self.unet = unet
        self.timestep = int(timestep)
        # Official: the VAE posterior is sampled (latent_dist.sample()); False uses its mode (deterministic).
        self.sample_posterior = sample_posterior
        self.register_buffer("alphas_cumprod", alphas_cumprod.detach().float().clone(), persistent=False)
        self.tile, self.tile_overlap = 0, 0  # latent tiling of denoise: off

    @property
    def scale_factor(self) -> int:
        return downscale_factor(self.vae.config)

    def enable_tiling(self, tile: int, overlap: int) -> None:
        """Denoise in ``tile`` x ``tile`` latent tiles overlapping by ``overlap`` latent pixels; tile 0 = off."""
        if tile > 0 and not 0 <= overlap < tile:
            raise ValueError(f"tile overlap must be in [0, tile={tile}), got {overlap}")
        self.tile, self.tile_overlap = max(tile, 0), overlap

    def disable_tiling(self) -> None:
        self.tile, self.tile_overlap = 0, 0

    def encode(self, lr_up: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> scaled latent (B, 4, H/f, W/f)."""
        f = self.scale_factor
        if lr_up.ndim != 4 or lr_up.shape[1] != 3 or lr_up.shape[-1] % f or lr_up.shape[-2] % f:
            raise ValueError(f"generator input must be (B, 3, H, W) with H, W multiples of {f}, got {tuple(lr_up.shape)}")
        with _no_autocast(lr_up):  # the VAE runs in its own dtype (fp32), as the official code
            dist = self.vae.encode(lr_up.to(self.vae.dtype)).latent_dist
            z = dist.sample(generator) if self.sample_posterior else dist.mode()
        return z * self.vae.config.scaling_factor

    def denoise(self, z: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """One UNet evaluation at ``self.timestep``, turned into x0. z (B, 4, h, w), prompt_embeds (B, 77, D).

        Tiled when ``enable_tiling`` was called and z is larger than a tile."""
        if prompt_embeds.shape[0] != z.shape[0]:
            raise ValueError(f"prompt_embeds batch {prompt_embeds.shape[0]} != latent batch {z.shape[0]}")
        return tiled_apply(lambda zt: self._denoise(zt, prompt_embeds), z, self.tile, self.tile_overlap)

    def _denoise(self, z: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        t = torch.full((z.shape[0],), self.timestep, device=z.device, dtype=torch.long)
        eps = self.unet(z.to(self.unet.dtype), t, encoder_hidden_states=prompt_embeds.to(self.unet.dtype)).sample
        a_t = self.alphas_cumprod[self.timestep].to(z.device)
        return (z - (1 - a_t).sqrt() * eps.to(z.dtype)) / a_t.sqrt()

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        """Scaled latent -> image in [-1, 1] (clamped, as the official code does)."""
        with _no_autocast(z0):
            x = self.vae.decode(z0.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return x.clamp(-1, 1)

    def forward(self, lr_up: torch.Tensor, prompt_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (sr image (B, 3, H, W) in [-1, 1], x0 latent (B, 4, H/f, W/f))."""
        z0 = self.denoise(self.encode(lr_up), prompt_embeds)
        return self.decode(z0), z0


def _no_autocast(x: torch.Tensor):
    """Mixed precision off inside (official: torch.cuda.amp.autocast(enabled=False) around the VAE)."""
    return torch.autocast(device_type=x.device.type, enabled=False)


# ---------------------------------------------------------------------------------------------
# Latent tiling
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
