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
"""
from __future__ import annotations

import torch
from torch import nn


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

    @property
    def scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

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
        """One UNet evaluation at ``self.timestep``, turned into x0. z (B, 4, h, w), prompt_embeds (B, 77, D)."""
        if prompt_embeds.shape[0] != z.shape[0]:
            raise ValueError(f"prompt_embeds batch {prompt_embeds.shape[0]} != latent batch {z.shape[0]}")
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
