"""Variational score distillation as OSEDiff uses it (and TVT inherits), on the generator's x0 latent.

A frozen SD UNet ("real", classifier-free guidance) and a LoRA-tuned copy ("fake", trained with the usual
diffusion loss on the detached generator latents) both predict x0 from a re-noised latent at a timestep in
[min_ratio, max_ratio] of the schedule. The generator is pushed along

    grad = (x0_fake - x0_real) / mean|latent - x0_real|          (per sample, OSEDiff Eq. 5)

through the surrogate loss mean((latent - sg(latent - grad))^2) = F.mse_loss(latent, sg(latent - grad)), whose
gradient is 2 * grad / numel: the official OSEDiff/TVT ``distribution_matching_loss`` exactly (no 0.5 factor, which
would halve lambda_VSD).

SD's UNets are trained at 64x64 latents; the D4 latent of a 512 crop is 128x128, so (official TVT) it is
split into 2x2 patches with the prompt embeddings repeated (``patches=True``); ``patches=False`` feeds the
whole latent. Nothing here assumes a size: any latent with even sides works.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def split_patches(z: torch.Tensor, grid: int = 2) -> torch.Tensor:
    """(B, C, H, W) -> (grid*grid*B, C, H/grid, W/grid); patch-major order (all samples' patch 0, then 1, ...)."""
    b, c, h, w = z.shape
    if h % grid or w % grid:
        raise ValueError(f"latent {h}x{w} does not split into a {grid}x{grid} grid")
    z = z.reshape(b, c, grid, h // grid, grid, w // grid).permute(2, 4, 0, 1, 3, 5)
    return z.reshape(grid * grid * b, c, h // grid, w // grid)


def eps_to_x0(eps: torch.Tensor, noisy: torch.Tensor, alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    a = alphas_cumprod.to(noisy.device, noisy.dtype)[t].view(-1, 1, 1, 1)
    return (noisy - (1 - a).sqrt() * eps) / a.sqrt()


class VSDLoss(nn.Module):
    """Holds the real (frozen) and fake (LoRA) UNets; ``generator_loss`` and ``fake_loss`` return ``(loss, logs)``."""

    def __init__(self, real_unet: nn.Module, fake_unet: nn.Module, scheduler, cfg_scale: float = 7.5,
                 min_ratio: float = 0.25, max_ratio: float = 0.75, patches: bool = True, grid: int = 2):
        super().__init__()
        self.real_unet, self.fake_unet, self.scheduler = real_unet, fake_unet, scheduler
        self.cfg_scale, self.patches, self.grid = cfg_scale, patches, grid
        n = scheduler.config.num_train_timesteps
        self.t_min, self.t_max = int(n * min_ratio), int(n * max_ratio)
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.float().clone(), persistent=False)

    def _to_sd(self, z: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.patches:
            return z, emb
        return split_patches(z, self.grid), emb.repeat(self.grid * self.grid, 1, 1)  # matches patch-major order

    def _noise(self, z: torch.Tensor, low: int, high: int):
        t = torch.randint(low, high, (z.shape[0],), device=z.device).long()
        noise = torch.randn_like(z)
        return self.scheduler.add_noise(z, noise, t), noise, t

    def generator_loss(self, latent: torch.Tensor, emb: torch.Tensor, neg_emb: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """latent (B, 4, h, w): the generator's x0 (with grad); emb/neg_emb (B, 77, D)."""
        z, e = self._to_sd(latent, emb)
        _, ne = self._to_sd(latent, neg_emb)
        with torch.no_grad():
            noisy, _, t = self._noise(z.detach(), self.t_min, self.t_max)
            x0_fake = eps_to_x0(self.fake_unet(noisy, t, encoder_hidden_states=e).sample.float(), noisy, self.alphas_cumprod, t)
            dtype = next(self.real_unet.parameters(), noisy).dtype  # official: the real UNet runs in fp16
            eps = self.real_unet(torch.cat([noisy, noisy]).to(dtype), torch.cat([t, t]),
                                 encoder_hidden_states=torch.cat([ne, e]).to(dtype)).sample.float()
            eps_uncond, eps_text = eps.chunk(2)
            eps_real = eps_uncond + self.cfg_scale * (eps_text - eps_uncond)
            x0_real = eps_to_x0(eps_real, noisy, self.alphas_cumprod, t)
        z = z.float()
        weight = (z.detach() - x0_real).abs().mean(dim=(1, 2, 3), keepdim=True)
        grad = (x0_fake - x0_real) / weight
        loss = F.mse_loss(z, (z - grad).detach())  # official: no 0.5
        return loss, {"vsd": loss.detach()}

    def fake_loss(self, latent: torch.Tensor, emb: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Diffusion (epsilon) loss of the fake UNet on the detached generator latents, any timestep."""
        z, e = self._to_sd(latent.detach(), emb.detach())
        noisy, noise, t = self._noise(z, 0, self.scheduler.config.num_train_timesteps)
        pred = self.fake_unet(noisy, t, encoder_hidden_states=e).sample
        loss = F.mse_loss(pred.float(), noise.float())
        return loss, {"fake_diffusion": loss.detach()}
