"""Transfer VAE Training (paper Sec. 3.1, Fig. 2a) and its ablations, as one stage class.

    mode=stage1   D4 decoder <- frozen SD VAE-D8 encoder's latent of up2(x); L1 + LPIPS + PatchGAN
    mode=stage2   D4 encoder, stage-1 decoder frozen;                        L1 + LPIPS (+ optional KL)
    mode=scratch  T1 (Table 6): the whole D4 from scratch, no transfer;       L1 + LPIPS + PatchGAN + KL
    mode=align    T2 (Table 6): the whole D4 with an L2 loss pulling its latent to D8's
    mode=teacher  toy runs only: trains a small VAE-D8 (the SD VAE stand-in) from scratch

Images are in [-1, 1]. Latents are compared unscaled (D4 and D8 share SD's space and scaling 0.18215).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from ..losses.vae_loss import ReconstructionLoss, VAEGANLoss
from ..models.loading import SD21_BASE
from ..models.vae import build_vae_d4, load_vae_d4, load_vae_d8
from .core import Stage, TrainConfig, make_optimizer, make_scheduler

MODES = ("stage1", "stage2", "scratch", "align", "teacher")


@dataclass
class VAEDataConfig:
    sources: list = field(default_factory=lambda: ["../shared/benchmarks/DRealSR/HR"])
    crop_size: int = 512
    val_dir: Optional[str] = None  # held-out HR images for validation during training
    num_val: int = 4


@dataclass
class VAELossConfig:
    l1_weight: float = 1.0
    lpips_weight: float = 1.0
    lpips_backbone: str = "pretrained"  # "random" only for toy runs without VGG weights
    disc_weight: float = 0.5
    disc_start: int = 50001  # LDM's kl-f8 default: train the decoder alone first
    disc_lr: Optional[float] = None  # defaults to train.lr
    disc_ndf: int = 64
    kl_weight: float = 0.0  # stage 2: the frozen decoder already pins the latent space; a KL prior would pull it off
    align_weight: float = 1.0  # T2 only


@dataclass
class VAETransferConfig:
    mode: str = "stage1"
    sd_model: str = SD21_BASE  # SD 2.1 folder or hub id: its vae/ is the frozen VAE-D8
    variant: str = "d4"  # d4 | v1 | v2 (Table 5)
    vae_kwargs: dict = field(default_factory=dict)  # overrides of the VAE-D4 config (tiny runs)
    decoder_from: Optional[str] = None  # stage 2: the stage-1 export folder
    d8_latent: str = "mode"  # mode | sample (see below)
    data: VAEDataConfig = field(default_factory=VAEDataConfig)
    loss: VAELossConfig = field(default_factory=VAELossConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(run_name="vae"))


class _Autoencode(nn.Module):
    """What the trained VAE computes in each mode, behind one forward() so DDP sees it."""

    def __init__(self, vae: nn.Module, mode: str):
        super().__init__()
        self.vae, self.mode = vae, mode

    def forward(self, x: torch.Tensor, z_d8: torch.Tensor | None):
        if self.mode == "stage1":  # decode the teacher's latent
            return self.vae.decode(z_d8).sample, None
        posterior = self.vae.encode(x).latent_dist
        z = posterior.mode() if self.mode == "stage2" else posterior.sample()
        return self.vae.decode(z).sample, posterior


class VAETransferStage(Stage):
    """Transfer VAE Training stage; see the module docstring for the modes."""

    Config = VAETransferConfig
    name = "vae"

    def setup(self, accelerator) -> None:
        cfg = self.cfg
        if cfg.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got '{cfg.mode}'")
        if cfg.d8_latent not in ("mode", "sample"):
            raise ConfigError(f"d8_latent must be 'mode' or 'sample', got '{cfg.d8_latent}'")
        self.name = f"vae_{cfg.mode}"
        device = accelerator.device
        # Frozen VAE-D8 teacher (not needed to train the teacher itself or T1).
        self.vae_d8 = None
        if cfg.mode in ("stage1", "align"):
            self.vae_d8 = load_vae_d8(cfg.sd_model).to(device).eval().requires_grad_(False)
        self.vae = self._build_vae()
        self._freeze_for_mode()
        if cfg.train.gradient_checkpointing:
            self.vae.enable_gradient_checkpointing()
        self.model = accelerator.prepare(_Autoencode(self.vae, cfg.mode))
        rec = ReconstructionLoss(cfg.loss.l1_weight, cfg.loss.lpips_weight, cfg.loss.lpips_backbone).to(device)
        use_gan = cfg.mode in ("stage1", "scratch", "teacher") and cfg.loss.disc_weight > 0
        self.gan = VAEGANLoss(rec, cfg.loss.disc_weight if use_gan else 0.0, cfg.loss.disc_start, cfg.loss.disc_ndf).to(device)
        gen_opt = make_optimizer(self.vae.parameters(), cfg.train)
        self.optimizers = [accelerator.prepare(gen_opt)]
        self.schedulers = [make_scheduler(gen_opt, cfg.train)]
        if use_gan:
            self.gan.discriminator = accelerator.prepare(self.gan.discriminator)
            disc_opt = make_optimizer(self.gan.discriminator.parameters(), cfg.train, lr=cfg.loss.disc_lr)
            self.optimizers.append(accelerator.prepare(disc_opt))
            self.schedulers.append(make_scheduler(disc_opt, cfg.train))
        self.train_dataset = _hr_dataset(cfg.data.sources, cfg.data.crop_size, cfg.train.seed)
        self._val_images = None

    def _build_vae(self) -> nn.Module:
        cfg = self.cfg
        if cfg.mode == "teacher":
            from diffusers import AutoencoderKL

            from ..testing import tiny_vae_d8_config

            return AutoencoderKL(**{**tiny_vae_d8_config(), **cfg.vae_kwargs})
        vae = build_vae_d4(cfg.variant, **cfg.vae_kwargs)
        if cfg.mode == "stage2":
            if not cfg.decoder_from:
                raise ConfigError("mode=stage2 needs decoder_from=<stage-1 export folder>")
            trained = load_vae_d4(cfg.decoder_from)
            vae.load_state_dict(trained.state_dict())  # the stage-1 decoder (and post_quant_conv) carry over
        return vae

    def _freeze_for_mode(self) -> None:
        mode, vae = self.cfg.mode, self.vae
        vae.requires_grad_(mode in ("scratch", "align", "teacher"))
        if mode == "stage1":  # the D4 decoder learns; its encoder is untouched until stage 2
            vae.decoder.requires_grad_(True)
            vae.post_quant_conv.requires_grad_(True)
        elif mode == "stage2":
            vae.encoder.requires_grad_(True)
            vae.quant_conv.requires_grad_(True)

    def trainable_modules(self) -> list[nn.Module]:
        mods = [self.model]
        if self.gan.disc_weight > 0:
            mods.append(self.gan.discriminator)
        return mods

    @torch.no_grad()
    def d8_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Unscaled D8 latent of the 2x bicubic-upsampled image: (B, 4, H/4, W/4), the D4 latent's size.

        The posterior mode by default: the SD posterior's std is tiny, and at inference the CE-UNet hands the
        decoder a point estimate, not a sample; ``d8_latent=sample`` trains on samples instead.
        """
        up2 = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)
        dist = self.vae_d8.encode(up2).latent_dist
        return dist.mode() if self.cfg.d8_latent == "mode" else dist.sample()

    def train_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        cfg, acc = self.cfg, self.accelerator
        x = batch["hr"] * 2 - 1  # (B, 3, S, S) in [-1, 1]
        z_d8 = self.d8_latent(x) if self.vae_d8 is not None else None
        x_rec, posterior = self.model(x, z_d8)
        last_layer = self.vae.decoder.conv_out.weight
        loss, logs = self.gan.generator_loss(x_rec, x, step, last_layer)
        if posterior is not None and cfg.loss.kl_weight > 0:
            kl = posterior.kl().mean()
            loss = loss + cfg.loss.kl_weight * kl
            logs["kl"] = kl.detach()
        if cfg.mode == "align":  # T2: pull the D4 latent onto D8's with an L2 loss
            align = F.mse_loss(posterior.mode(), z_d8)
            loss = loss + cfg.loss.align_weight * align
            logs["align"] = align.detach()
        acc.backward(loss)
        d_loss, d_logs = self.gan.discriminator_loss(x_rec, x, step)
        if d_loss is not None:
            acc.backward(d_loss)
        return {"loss": loss.detach(), **logs, **d_logs}

    @torch.no_grad()
    def validate(self, step: int, run_dir: Path) -> dict[str, float]:
        if not self.cfg.data.val_dir:
            return {}
        from ..io import list_images, pil_to_tensor, read_image
        from .vae_eval import psnr_y

        if self._val_images is None:
            files = list_images(self.cfg.data.val_dir)[: self.cfg.data.num_val]
            s = self.cfg.data.crop_size
            self._val_images = torch.stack([_center_crop(pil_to_tensor(read_image(f)), s) for f in files])
        x = self._val_images.to(self.accelerator.device) * 2 - 1
        self.model.eval()
        z_d8 = self.d8_latent(x) if self.vae_d8 is not None else None
        x_rec = self.model(x, z_d8)[0].clamp(-1, 1) if self.cfg.mode == "stage1" else \
            self.vae.decode(self.vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        self.model.train()
        pred, gt = (x_rec + 1) / 2, (x + 1) / 2
        if self.accelerator.is_main_process and self.cfg.train.tracker == "tensorboard":
            writer = self.accelerator.get_tracker("tensorboard").writer
            writer.add_images("val/recon_vs_gt", torch.cat([pred, gt], dim=-1).cpu(), step)
        return {"psnr_y": float(psnr_y(pred, gt).mean())}

    def export(self, folder: Path) -> None:
        self.accelerator.unwrap_model(self.model).vae.save_pretrained(folder)


def _center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"validation image {w}x{h} is smaller than crop {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, top:top + size, left:left + size]


def _hr_dataset(sources, crop_size: int, seed: int):
    from ..data.datasets import HRImageDataset

    return HRImageDataset(list(sources), crop_size=crop_size, seed=seed)
