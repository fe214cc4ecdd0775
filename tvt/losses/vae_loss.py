"""Reconstruction + PatchGAN loss of Transfer VAE Training (Sec. 3.1), after latent-diffusion's LPIPSWithDiscriminator.

Every loss returns ``(loss, logs)``. The generator's GAN term is weighted adaptively: the ratio of the gradient
norms of the reconstruction and GAN losses at the decoder's last layer (clamped to [0, 1e4]) times
``disc_weight``, and is off before ``disc_start``.
"""
from __future__ import annotations

import torch
from torch import nn

from .discriminator import NLayerDiscriminator, hinge_d_loss
from .perceptual import LPIPSLoss


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    disc_weight: float = 1.0) -> torch.Tensor:
    """||d rec / d w|| / (||d g / d w|| + 1e-4), clamped to [0, 1e4], times disc_weight (LDM, Eq. 7 of VQGAN)."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    w = rec_grad.norm() / (g_grad.norm() + 1e-4)
    return w.clamp(0.0, 1e4).detach() * disc_weight


class ReconstructionLoss(nn.Module):
    """l1_weight * |x - x_rec| + lpips_weight * LPIPS(x_rec, x); images in [-1, 1]."""

    def __init__(self, l1_weight: float = 1.0, lpips_weight: float = 1.0, lpips_backbone: str = "pretrained"):
        super().__init__()
        self.l1_weight, self.lpips_weight = l1_weight, lpips_weight
        self.lpips = LPIPSLoss("vgg", lpips_backbone) if lpips_weight > 0 else None

    def forward(self, x_rec: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        l1 = (x_rec.float() - x.float()).abs().mean()
        lp = self.lpips(x_rec, x) if self.lpips is not None else torch.zeros_like(l1)
        loss = self.l1_weight * l1 + self.lpips_weight * lp
        return loss, {"l1": l1.detach(), "lpips": lp.detach(), "rec": loss.detach()}


class VAEGANLoss(nn.Module):
    """Reconstruction + adaptive-weight PatchGAN (hinge), with the discriminator inside."""

    def __init__(self, rec: ReconstructionLoss, disc_weight: float = 0.5, disc_start: int = 0, disc_ndf: int = 64,
                 disc_layers: int = 3):
        super().__init__()
        self.rec = rec
        self.disc_weight, self.disc_start = disc_weight, disc_start
        self.discriminator = NLayerDiscriminator(ndf=disc_ndf, n_layers=disc_layers)

    def generator_loss(self, x_rec, x, step: int, last_layer: torch.Tensor) -> tuple[torch.Tensor, dict]:
        rec, logs = self.rec(x_rec, x)
        if step < self.disc_start or self.disc_weight <= 0:
            return rec, logs
        self.discriminator.requires_grad_(False)  # the generator pass must not train the discriminator
        g_loss = -self.discriminator(x_rec.float()).mean()
        self.discriminator.requires_grad_(True)
        w = adaptive_weight(rec, g_loss, last_layer, self.disc_weight)
        return rec + w * g_loss, {**logs, "g_loss": g_loss.detach(), "d_weight": w}

    def discriminator_loss(self, x_rec, x, step: int) -> tuple[torch.Tensor | None, dict]:
        if step < self.disc_start or self.disc_weight <= 0:
            return None, {}
        d = hinge_d_loss(self.discriminator(x.float()), self.discriminator(x_rec.detach().float()))
        return d, {"d_loss": d.detach()}
