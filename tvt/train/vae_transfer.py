"""Transfer VAE Training (paper Sec. 3.2, Fig. 2a) and its ablations, as one stage class.

    mode=stage1   D4 decoder <- frozen SD VAE-D8 encoder's latent of up2(x);  L1 + LPIPS + PatchGAN    (Eq. 2)
    mode=stage2   D4 encoder under the frozen stage-1 decoder;               L1 + LPIPS + KL (no GAN) (Eq. 4)
    mode=scratch  a whole VAE from scratch, LDM's recipe: T1 of Table 6 (variant d4), or a VAE-D8
                  (variant d8: SD's layout, the toy runs' stand-in for SD's VAE);  L1 + LPIPS + KL + PatchGAN
    mode=align    T2 (Table 6): T1 plus an L2 loss pulling the D4 latent onto the D8 latent of up2(x)

The official VAE-D4 was trained with latent-diffusion's code, so every stage follows LDM (``AutoencoderKL`` +
``LPIPSWithDiscriminator``, kl-f8 config); each convention is a config key whose default is LDM's:
summed reconstruction and KL (``loss.reduction``), posterior samples in training (``sample_posterior``,
``d8_latent``), KL weight 1e-6, adaptive GAN weight 0.5 from ``disc_start`` 50001, Adam(0.5, 0.9) without weight
decay or gradient clipping, and ``train.scale_lr`` (base lr x batch x processes x accumulation).

Images are in [-1, 1]. Latents are compared unscaled (D4 and D8 share SD's space and scaling 0.18215).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from ..models.latent_channels import widen_latent
from ..models.sd21 import SD21_VAE_CONFIG, downscale_factor
from ..losses.vae_loss import REDUCTIONS, ReconstructionLoss, VAEGANLoss, kl_loss, latent_l2_loss
from ..models.loading import SD21_BASE
from ..models.vae import VAE_VARIANTS, build_vae_d4, load_vae_d4, load_vae_d8
from .optim import make_optimizer, make_scheduler
from .stage import Stage
from .train_config import TrainConfig

log = logging.getLogger(__name__)

MODES = ("stage1", "stage2", "scratch", "align")
D8_VARIANT = "d8"  # SD 2.1's VAE-D8 layout (4 stages 128/256/512/512 + mid block), a diffusers AutoencoderKL
VARIANTS = (*VAE_VARIANTS, D8_VARIANT)


@dataclass
class VAEDataConfig:
    # each a path or {path, stride, weight, resize} (tvt.data.mix.Source); a path alone: every crop_size window
    # at stride 64 is a sample (TVT README: LSDIR so cut); OpenImage images are one sample each (stride: null)
    sources: list = field(default_factory=list)
    crop_size: int = 512
    # LDM's autoencoder data (ldm/data/imagenet.py ImageNetSR): no flips or rotations; images smaller than the crop
    # are rescaled (SmallestMaxSize, INTER_AREA), not padded
    use_hflip: bool = False
    use_rot: bool = False
    small_policy: str = "resize"  # pad | resize | skip
    val_dir: Optional[str] = None  # held-out HR images for validation during training
    num_val: int = 4


@dataclass
class VAELossConfig:
    l1_weight: float = 1.0  # LDM pixelloss_weight
    lpips_weight: float = 1.0  # LDM perceptual_weight
    lpips_backbone: str = "pretrained"  # "random" only for toy runs without VGG weights
    reduction: str = "sum"  # LDM: torch.sum(nll) / B and torch.sum(kl) / B; "mean" divides both by C*H*W too
    disc_weight: float = 0.5  # LDM kl-f8 lossconfig disc_weight
    disc_start: int = 50001  # LDM kl-f8 lossconfig disc_start: the decoder trains alone first
    disc_lr: Optional[float] = None  # LDM: the discriminator's Adam has the autoencoder's lr (the default)
    disc_ndf: int = 64  # taming NLayerDiscriminator ndf
    kl_weight: float = 1.0e-6  # LDM kl-f8 lossconfig kl_weight (stage 2 too: LDM's value, the paper is silent)
    align_weight: float = 1.0  # T2 only


@dataclass
class VAETransferConfig:
    mode: str = "stage1"
    sd_model: str = SD21_BASE  # SD 2.1 folder or hub id: its vae/ is the frozen VAE-D8
    variant: str = "d4"  # d4 | v1 | v2 (Table 5) | d8c8 (Table 7's S3) | d8 (mode=scratch only: SD's VAE-D8 layout)
    vae_kwargs: dict = field(default_factory=dict)  # overrides of the variant's config (tiny runs)
    decoder_from: Optional[str] = None  # stage 2: the stage-1 export folder (its decoder; the encoder starts random)
    sample_posterior: bool = True  # LDM AutoencoderKL.forward(sample_posterior=True): train on z ~ q(z|x)
    d8_latent: str = "sample"  # stage 1: what the D4 decoder reads; LDM's decoder always reads posterior samples
    data: VAEDataConfig = field(default_factory=VAEDataConfig)
    loss: VAELossConfig = field(default_factory=VAELossConfig)
    # LDM configure_optimizers: Adam(betas=(0.5, 0.9)), no weight decay (AdamW with weight_decay=0 is Adam), no lr
    # scheduler (a constant lr); no gradient clipping (Lightning's gradient_clip_val=0, which LDM's configs never
    # set).
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        run_name="vae", adam_beta1=0.5, adam_beta2=0.9, weight_decay=0.0, max_grad_norm=0.0,
        lr_scheduler="constant"))


class _Autoencode(nn.Module):
    """What the trained VAE computes in each mode, behind one forward() so DDP sees it."""

    def __init__(self, vae: nn.Module, mode: str, sample_posterior: bool):
        super().__init__()
        self.vae, self.mode, self.sample_posterior = vae, mode, sample_posterior

    def forward(self, x: torch.Tensor, z_d8: torch.Tensor | None):
        if self.mode == "stage1":  # decode the teacher's latent
            return self.vae.decode(z_d8).sample, None
        posterior = self.vae.encode(x).latent_dist
        z = posterior.sample() if self.sample_posterior else posterior.mode()
        return self.vae.decode(z).sample, posterior


class VAETransferStage(Stage):
    """Transfer VAE Training stage; see the module docstring for the modes."""

    Config = VAETransferConfig
    name = "vae"
    run_inputs = ("decoder_from",)
    optimizer_names = ("autoencoder", "discriminator")

    def setup(self, accelerator) -> None:
        cfg = self.cfg
        if cfg.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got '{cfg.mode}'")
        if cfg.d8_latent not in ("mode", "sample"):
            raise ConfigError(f"d8_latent must be 'mode' or 'sample', got '{cfg.d8_latent}'")
        if cfg.loss.reduction not in REDUCTIONS:
            raise ConfigError(f"loss.reduction must be one of {REDUCTIONS}, got '{cfg.loss.reduction}'")
        if cfg.variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {VARIANTS}, got '{cfg.variant}'")
        if cfg.variant == D8_VARIANT and cfg.mode != "scratch":
            raise ConfigError("variant=d8 (a VAE-D8) is only trained with mode=scratch")
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
        self.model = accelerator.prepare(_Autoencode(self.vae, cfg.mode, cfg.sample_posterior))
        rec = ReconstructionLoss(cfg.loss.l1_weight, cfg.loss.lpips_weight, cfg.loss.lpips_backbone,
                                 cfg.loss.reduction).to(device)
        use_gan = cfg.mode != "stage2" and cfg.loss.disc_weight > 0
        if cfg.mode == "stage2" and cfg.loss.disc_weight > 0:
            log.info("stage 2 trains without GAN (paper Sec. 3.2, Eq. 4): loss.disc_weight=%g ignored",
                        cfg.loss.disc_weight)
        self.gan = VAEGANLoss(rec, cfg.loss.disc_weight if use_gan else 0.0, cfg.loss.disc_start, cfg.loss.disc_ndf).to(device)
        gen_opt = make_optimizer(self.vae.parameters(), cfg.train)
        self.optimizers = [accelerator.prepare(gen_opt)]
        self.schedulers = [make_scheduler(gen_opt, cfg.train)]
        lrs = {"autoencoder": gen_opt.param_groups[0]["lr"]}
        if use_gan:
            self.gan.discriminator = accelerator.prepare(self.gan.discriminator)
            disc_opt = make_optimizer(self.gan.discriminator.parameters(), cfg.train, lr=cfg.loss.disc_lr)
            self.optimizers.append(accelerator.prepare(disc_opt))
            self.schedulers.append(make_scheduler(disc_opt, cfg.train))
            lrs["discriminator"] = disc_opt.param_groups[0]["lr"]
        log.info("%s: effective lr %s (scale_lr=%s)", self.name, ", ".join(f"{k} {v:.3e}" for k, v in lrs.items()),
                 cfg.train.scale_lr)
        self.effective_lr = lrs
        self.train_dataset = _hr_dataset(cfg.data, cfg.train.seed)
        self._val_images = None

    def _build_vae(self) -> nn.Module:
        cfg = self.cfg
        if cfg.variant == D8_VARIANT:
            from diffusers import AutoencoderKL

            return AutoencoderKL(**{**SD21_VAE_CONFIG, **cfg.vae_kwargs})
        vae = build_vae_d4(cfg.variant, **cfg.vae_kwargs)
        if cfg.mode == "stage2":
            if not cfg.decoder_from:
                raise ConfigError("mode=stage2 needs decoder_from=<stage-1 export folder>")
            # the stage-1 decoder and post_quant_conv carry over; the encoder (+ quant_conv) keeps this run's random init
            # (train.seed; the paper does not say how the stage-2 encoder starts)
            carried = {k: v for k, v in load_vae_d4(cfg.decoder_from).state_dict().items()
                       if k.startswith(("decoder.", "post_quant_conv."))}
            missing = [k for k in vae.state_dict() if k.startswith(("decoder.", "post_quant_conv.")) and k not in carried]
            if missing:
                raise ConfigError(f"decoder_from={cfg.decoder_from} lacks decoder weights, e.g. {missing[:3]}")
            vae.load_state_dict(carried, strict=False)
        return vae

    def _freeze_for_mode(self) -> None:
        mode, vae = self.cfg.mode, self.vae
        vae.requires_grad_(mode in ("scratch", "align"))
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

    def frozen_modules(self) -> list[nn.Module]:
        return self.trainable_modules() + ([self.vae_d8] if self.vae_d8 is not None else [])

    @torch.no_grad()
    def d8_latent(self, x: torch.Tensor, sample: bool | None = None) -> torch.Tensor:
        """Unscaled D8 latent of the 2x bicubic-upsampled image: (B, 4, H/4, W/4), the D4 latent's size.

        A posterior sample by default (``d8_latent=sample``): LDM's decoder is only ever trained on
        ``posterior.sample()`` (AutoencoderKL.forward, sample_posterior=True), so the stage-1 decoder, which stands in
        for it, reads what SD's decoder was trained to read. ``d8_latent=mode`` trains on the posterior mean instead.
        Table 7's VAE-D8C8 (variant d8c8): the D8 latent of the image itself, its channels interpolated 4 -> 8
        (tvt.models.latent_channels). Generally: upsampled by 8 / the trained VAE's factor, widened to its channels.
        """
        up = downscale_factor(self.vae_d8.config) // downscale_factor(self.vae.config)
        if up > 1:
            x = F.interpolate(x, scale_factor=up, mode="bicubic", align_corners=False).clamp(-1, 1)
        dist = self.vae_d8.encode(x).latent_dist
        if sample is None:
            sample = self.cfg.d8_latent == "sample"
        z = dist.sample() if sample else dist.mode()
        channels = self.vae.config.latent_channels
        return z if channels == z.shape[1] else widen_latent(z, channels)

    def train_step(self, batch: dict, step: int):
        """Yields the autoencoder's loss, then (once it trains) the discriminator's, which the Trainer
        backpropagates and updates in turn: LDM's order (Lightning runs one training_step per optimizer,
        autoencoder.py:351-370). LDM's second training_step forwards the batch again, after the autoencoder's
        update; the discriminator here reads this forward's reconstruction (detached): one VAE forward less per
        step, the reconstruction of the weights one update older on the step's last micro-batch."""
        cfg = self.cfg
        x = batch["hr"] * 2 - 1  # (B, 3, S, S) in [-1, 1]
        z_d8 = None
        if cfg.mode == "stage1":
            z_d8 = self.d8_latent(x)
        elif cfg.mode == "align":  # T2's target: the D8 posterior mean (a deterministic target for an L2 loss)
            z_d8 = self.d8_latent(x, sample=False)
        x_rec, posterior = self.model(x, z_d8)
        last_layer = self.vae.decoder.conv_out.weight  # LDM get_last_layer()
        loss, logs = self.gan.generator_loss(x_rec, x, step, last_layer)
        if posterior is not None and cfg.loss.kl_weight > 0:
            kl = kl_loss(posterior, x, cfg.loss.reduction)  # same reduction as the reconstruction
            loss = loss + cfg.loss.kl_weight * kl
            logs["kl"] = kl.detach()
        if cfg.mode == "align":  # T2: pull the D4 latent (posterior mean) onto D8's with an L2 loss
            align = latent_l2_loss(posterior.mode(), z_d8, x, cfg.loss.reduction)
            loss = loss + cfg.loss.align_weight * align
            logs["align"] = align.detach()
        yield loss, {"loss": loss.detach(), **logs}
        d_loss, d_logs = self.gan.discriminator_loss(x_rec, x, step)  # x_rec detached inside
        if d_loss is not None:
            yield d_loss, d_logs

    @torch.no_grad()
    def validate(self, step: int, run_dir: Path) -> dict[str, float]:
        if not self.cfg.data.val_dir:
            return {}
        from ..io import list_images, pil_to_tensor, read_image
        from ..metrics.image import psnr_y

        if self._val_images is None:
            files = list_images(self.cfg.data.val_dir)[: self.cfg.data.num_val]
            s = self.cfg.data.crop_size
            self._val_images = torch.stack([_center_crop(pil_to_tensor(read_image(f)), s) for f in files])
        x = self._val_images.to(self.accelerator.device) * 2 - 1
        self.model.eval()
        z_d8 = self.d8_latent(x, sample=False) if self.vae_d8 is not None else None  # evaluation: the mean
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


def _hr_dataset(data: VAEDataConfig, seed: int):
    from ..data.datasets import HRImageDataset

    if not data.sources:
        raise ConfigError("data.sources is empty: give HR image folders or file lists, e.g. data.sources=[${data:DIV2K/HR}]")
    return HRImageDataset(list(data.sources), crop_size=data.crop_size, use_flip=data.use_hflip, use_rot=data.use_rot,
                          small_policy=data.small_policy, seed=seed)
