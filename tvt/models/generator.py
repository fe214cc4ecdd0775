"""The one-step Real-ISR generator shared by training and inference (paper Sec. 3.3, Fig. 2b).

    lr_up (B, 3, H, W) in [-1, 1]   bicubic-upsampled LR
      -> encode   z  (B, 4, H/f, W/f)          f = 4 for VAE-D4 (TVT), 8 for VAE-D8 (OSEDiff)
      -> denoise  z0 = (z - sqrt(1 - a_t) * eps(z, t, c)) / sqrt(a_t),  t = 999
      -> decode   sr (B, 3, H, W) in [-1, 1]

``denoise`` is exactly one DDPMScheduler.step with a single inference step (its prev_t is < 0, so the
step returns the predicted x0); we write the formula out so no scheduler state is involved.
The same class runs TVT (VAE-D4 + CE-UNet) and the OSEDiff baseline (VAE-D8 + SD UNet).
"""
from __future__ import annotations

import torch
from torch import nn


class OneStepGenerator(nn.Module):
    def __init__(self, vae: nn.Module, unet: nn.Module, alphas_cumprod: torch.Tensor, timestep: int = 999,
                 sample_posterior: bool = False):
        super().__init__()
        self.vae = vae
        self.unet = unet
        self.timestep = int(timestep)
        # sample_posterior=False uses the posterior mode: deterministic output for a given input.
        self.sample_posterior = sample_posterior
        self.register_buffer("alphas_cumprod", alphas_cumprod.detach().float().clone(), persistent=False)

    @property
    def scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def encode(self, lr_up: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> scaled latent (B, 4, H/f, W/f)."""
        f = self.scale_factor
        if lr_up.ndim != 4 or lr_up.shape[1] != 3 or lr_up.shape[-1] % f or lr_up.shape[-2] % f:
            raise ValueError(f"generator input must be (B, 3, H, W) with H, W multiples of {f}, got {tuple(lr_up.shape)}")
        dist = self.vae.encode(lr_up.to(self.vae.dtype)).latent_dist
        z = dist.sample(generator) if self.sample_posterior else dist.mode()
        return z * self.vae.config.scaling_factor

    def denoise(self, z: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        """One UNet evaluation at t=999, turned into x0. z (B, 4, h, w), prompt_embeds (B, 77, D)."""
        if prompt_embeds.shape[0] != z.shape[0]:
            raise ValueError(f"prompt_embeds batch {prompt_embeds.shape[0]} != latent batch {z.shape[0]}")
        t = torch.full((z.shape[0],), self.timestep, device=z.device, dtype=torch.long)
        eps = self.unet(z.to(self.unet.dtype), t, encoder_hidden_states=prompt_embeds.to(self.unet.dtype)).sample
        a_t = self.alphas_cumprod[self.timestep].to(z.device)
        return (z - (1 - a_t).sqrt() * eps.to(z.dtype)) / a_t.sqrt()

    def decode(self, z0: torch.Tensor) -> torch.Tensor:
        """Scaled latent -> image in [-1, 1] (clamped, as the official code does)."""
        x = self.vae.decode(z0.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return x.clamp(-1, 1)

    def forward(self, lr_up: torch.Tensor, prompt_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (sr image (B, 3, H, W) in [-1, 1], x0 latent (B, 4, H/f, W/f))."""
        z0 = self.denoise(self.encode(lr_up), prompt_embeds)
        return self.decode(z0), z0
