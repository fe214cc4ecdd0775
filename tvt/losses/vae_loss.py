"""Reconstruction + KL + PatchGAN loss of Transfer VAE Training (Sec. 3.2), following latent-diffusion's
``LPIPSWithDiscriminator`` (ldm/modules/losses/contperceptual.py), which trained the official VAE-D4.

Every loss returns ``(loss, logs)``. LDM's conventions, each kept here:

- reconstruction ``|x - x_rec| + perceptual_weight * LPIPS`` is a per-pixel map (LPIPS, one number per image, is
  broadcast over C x H x W), SUMMED over C x H x W and averaged over the batch: ``torch.sum(nll) / B``;
- the KL of the posterior is summed over the latent's C x h x w and averaged over the batch: ``torch.sum(kl) / B``;
  ``reduction="mean"`` divides BOTH by C x H x W of the image instead, so their balance never changes;
- LDM's ``nll = rec / exp(logvar) + logvar`` has a learned ``logvar`` (init 0), but ``AutoencoderKL.configure_optimizers``
  never gives it to an optimizer: it stays 0 and ``nll == rec``, so we have no such parameter;
- the generator's GAN term ``-mean(D(x_rec))`` is weighted adaptively, ``||d nll / d w|| / (||d g / d w|| + 1e-4)``
  at the decoder's last layer ``w``, clamped to [0, 1e4], detached, times ``disc_weight``; the discriminator factor
  is 0 before ``disc_start`` (``adopt_weight``), which switches the GAN term and the discriminator's hinge loss off.
"""
from __future__ import annotations

import torch
from torch import nn

from .discriminator import NLayerDiscriminator, hinge_d_loss
from .perceptual import LPIPSLoss

REDUCTIONS = ("sum", "mean")


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    disc_weight: float = 1.0) -> torch.Tensor:
    """||d rec / d w|| / (||d g / d w|| + 1e-4), clamped to [0, 1e4], detached, times disc_weight
    (LDM ``calculate_adaptive_weight``; VQGAN Eq. 7)."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    w = rec_grad.norm() / (g_grad.norm() + 1e-4)
    return w.clamp(0.0, 1e4).detach() * disc_weight


def _normaliser(x: torch.Tensor, reduction: str) -> float:
    """What a summed loss on images shaped like ``x`` is divided by: B (LDM) or B x C x H x W."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got '{reduction}'")
    return float(x.shape[0] if reduction == "sum" else x.numel())


def kl_loss(posterior, x: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) summed over the latent, divided by the SAME normaliser as the reconstruction of ``x``."""
    kl = 0.5 * (posterior.mean.float().pow(2) + posterior.var.float() - 1.0 - posterior.logvar.float())
    return kl.sum() / _normaliser(x, reduction)


def latent_l2_loss(z: torch.Tensor, target: torch.Tensor, x: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Squared L2 between two latents (T2's alignment loss), reduced like the reconstruction of ``x``."""
    return (z.float() - target.float()).pow(2).sum() / _normaliser(x, reduction)


class ReconstructionLoss(nn.Module):
    """LDM's reconstruction term: ``l1_weight * |x - x_rec| + lpips_weight * LPIPS(x_rec, x)`` per pixel, reduced by
    ``reduction`` (``sum``: over C x H x W, mean over the batch, LDM; ``mean``: over everything). Images in [-1, 1]."""

    def __init__(self, l1_weight: float = 1.0, lpips_weight: float = 1.0, lpips_backbone: str = "pretrained",
                 reduction: str = "sum"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got '{reduction}'")
        self.l1_weight, self.lpips_weight, self.reduction = l1_weight, lpips_weight, reduction
        self.lpips = LPIPSLoss("vgg", lpips_backbone) if lpips_weight > 0 else None

    def per_image_lpips(self, x_rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B,) LPIPS distances (LPIPSLoss itself returns their mean)."""
        return self.lpips.net(x_rec.float(), x.float()).flatten()

    def forward(self, x_rec: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        l1_map = (x_rec.float() - x.float()).abs()
        pixels = x[0].numel()  # C x H x W: LDM broadcasts the per-image LPIPS over every pixel of the image
        lp = self.per_image_lpips(x_rec, x) if self.lpips is not None else torch.zeros(len(x), device=x.device)
        norm = _normaliser(x, self.reduction)
        loss = (self.l1_weight * l1_map.sum() + self.lpips_weight * pixels * lp.sum()) / norm
        return loss, {"l1": l1_map.mean().detach(), "lpips": lp.mean().detach(), "rec": loss.detach()}


class VAEGANLoss(nn.Module):
    """Reconstruction + adaptive-weight PatchGAN (hinge), with the discriminator inside (LDM LPIPSWithDiscriminator)."""

    def __init__(self, rec: ReconstructionLoss, disc_weight: float = 0.5, disc_start: int = 0, disc_ndf: int = 64,
                 disc_layers: int = 3):
        super().__init__()
        self.rec = rec
        self.disc_weight, self.disc_start = disc_weight, disc_start
        self.discriminator = NLayerDiscriminator(ndf=disc_ndf, n_layers=disc_layers)

    def disc_active(self, step: int) -> bool:
        """LDM ``adopt_weight(disc_factor, global_step, threshold=disc_start)``: factor 0 while step < disc_start."""
        return self.disc_weight > 0 and step >= self.disc_start

    def generator_loss(self, x_rec, x, step: int, last_layer: torch.Tensor) -> tuple[torch.Tensor, dict]:
        rec, logs = self.rec(x_rec, x)
        if not self.disc_active(step):
            return rec, logs
        self.discriminator.requires_grad_(False)  # the generator pass must not train the discriminator
        g_loss = -self.discriminator(x_rec.float()).mean()
        self.discriminator.requires_grad_(True)
        w = adaptive_weight(rec, g_loss, last_layer, self.disc_weight)  # LDM: from nll_loss, i.e. without the KL
        return rec + w * g_loss, {**logs, "g_loss": g_loss.detach(), "d_weight": w}

    def discriminator_loss(self, x_rec, x, step: int) -> tuple[torch.Tensor | None, dict]:
        if not self.disc_active(step):
            return None, {}
        d = hinge_d_loss(self.discriminator(x.float()), self.discriminator(x_rec.detach().float()))
        return d, {"d_loss": d.detach()}
