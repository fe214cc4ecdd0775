"""One-step TVT Real-ISR training (paper Sec. 3.3, Fig. 2b), OSEDiff-style.

    HR crop --Real-ESRGAN degradation--> LR --bicubic x4--> VAE-D4 encoder --> CE-UNet (t=999, prompt)
        --> x0 --> frozen VAE-D4 decoder --> SR;   loss = 1 * L2 + 2 * LPIPS + 1 * VSD

Trainable: the CE-UNet's LoRA (rank 4) on the original SD layers plus its fully trained replicated levels
(tvt.models.ce_unet.FULLY_TRAINED_PREFIXES); optional LoRA on the D4 encoder; and, with its own optimizer, the
LoRA of the VSD "fake" SD UNet. Everything else is frozen.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..losses.perceptual import LPIPSLoss
from ..losses.vsd import VSDLoss
from ..models.ce_unet import build_ce_unet_from_sd, load_sd_unet
from ..models.generator import OneStepGenerator
from ..models.loading import SD21_BASE
from ..models.lora import (add_ce_unet_lora, add_vae_encoder_lora, format_parameter_groups, lora_target_modules,
                           trainable_parameters_by_group)
from ..models.vae import load_vae_d4
from ..prompts import build_prompt_extractor, encode_prompts, join_prompt
from .core import Stage, TrainConfig, make_optimizer, make_scheduler

log = logging.getLogger(__name__)

NEGATIVE_PROMPT = ("painting, oil painting, illustration, drawing, art, sketch, cartoon, CG Style, 3D render, "
                   "unreal engine, blurring, dirty, messy, worst quality, low quality, frames, watermark, signature, "
                   "jpeg artifacts, deformed, lowres, over-smooth")


@dataclass
class ISRDataConfig:
    sources: list = field(default_factory=lambda: ["lists/lsdir.txt", "lists/ffhq10k.txt"])
    crop_size: int = 512
    degradation: str = "realesrgan"  # name in configs/degradation/ or a YAML path
    degradation_overrides: list = field(default_factory=list)
    val_hr: Optional[str] = None  # paired folders for validation (e.g. ../shared/benchmarks/RealSR/HR and LR)
    val_lr: Optional[str] = None
    num_val: int = 4


@dataclass
class PromptConfig:
    extractor: str = "fixed"  # fixed | ram
    tags: str = ""  # the fixed extractor's tags
    positive: str = ""  # appended: "{tags}, {positive}"
    negative: str = NEGATIVE_PROMPT
    ram_weights: Optional[str] = None
    dape_weights: Optional[str] = None


@dataclass
class ISRLossConfig:
    l2_weight: float = 1.0
    lpips_weight: float = 2.0
    lpips_backbone: str = "pretrained"
    vsd_weight: float = 1.0
    vsd_start: int = 0
    cfg_scale: float = 7.5
    min_dm_step_ratio: float = 0.25
    max_dm_step_ratio: float = 0.75
    vsd_patches: bool = True  # split the D4 latent into 2x2 patches of SD's native size (official TVT)
    fake_lr: Optional[float] = None  # the fake UNet's LoRA; defaults to train.lr


@dataclass
class ISRConfig:
    sd_model: str = SD21_BASE
    vae_d4: str = "runs/000-vae_stage2/export"
    lora_rank: int = 4
    encoder_lora: bool = False  # official release: off
    timestep: int = 999
    ema: bool = False
    ema_decay: float = 0.999
    data: ISRDataConfig = field(default_factory=ISRDataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    loss: ISRLossConfig = field(default_factory=ISRLossConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(run_name="isr", lr=5e-5, batch_size=2, grad_accum=2))


class ISRStage(Stage):
    """One-step Real-ISR training of TVT (CE-UNet LoRA + replicated levels) with L2 + LPIPS + VSD."""

    Config = ISRConfig
    name = "isr"

    def setup(self, accelerator) -> None:
        from diffusers import DDPMScheduler
        from transformers import CLIPTextModel, CLIPTokenizer

        from ..data.degradation import RealESRGANDegradation, load_degradation_config
        from ..models.loading import require_pretrained

        cfg, device = self.cfg, accelerator.device
        self.tokenizer = require_pretrained(CLIPTokenizer, cfg.sd_model, what="SD 2.1 tokenizer", subfolder="tokenizer")
        self.text_encoder = require_pretrained(CLIPTextModel, cfg.sd_model, what="SD 2.1 text encoder",
                                               subfolder="text_encoder").to(device).eval().requires_grad_(False)
        self.scheduler = require_pretrained(DDPMScheduler, cfg.sd_model, what="SD 2.1 scheduler", subfolder="scheduler")
        sd_unet = load_sd_unet(cfg.sd_model)
        # Generator: VAE-D4 (frozen, optional encoder LoRA) + CE-UNet built from SD's UNet.
        self.vae = load_vae_d4(cfg.vae_d4).requires_grad_(False)
        if cfg.encoder_lora:
            add_vae_encoder_lora(self.vae, cfg.lora_rank)
        self.ce_unet = build_ce_unet_from_sd(sd_unet)
        self.lora_config = add_ce_unet_lora(self.ce_unet, rank=cfg.lora_rank)
        if cfg.train.gradient_checkpointing:
            self.ce_unet.enable_gradient_checkpointing()
        self.generator = accelerator.prepare(
            OneStepGenerator(self.vae, self.ce_unet, self.scheduler.alphas_cumprod, cfg.timestep))
        gen_params = [p for p in self.generator.parameters() if p.requires_grad]
        self.optimizers = [accelerator.prepare(make_optimizer(gen_params, cfg.train))]
        self.schedulers = [make_scheduler(self.optimizers[0].optimizer, cfg.train)]
        groups = {"ce_unet": trainable_parameters_by_group(self.ce_unet), "vae_d4": trainable_parameters_by_group(self.vae)}
        # VSD: frozen real SD UNet and a LoRA-tuned fake copy (its own optimizer).
        self.vsd = None
        if cfg.loss.vsd_weight > 0:
            real = sd_unet.to(device).eval().requires_grad_(False)
            fake = copy.deepcopy(sd_unet).requires_grad_(False)
            from peft import LoraConfig

            fake.add_adapter(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_rank, init_lora_weights="gaussian",
                                        target_modules=lora_target_modules(fake)))
            if cfg.train.gradient_checkpointing:
                fake.enable_gradient_checkpointing()
            fake = accelerator.prepare(fake)
            self.vsd = VSDLoss(real, fake, self.scheduler, cfg.loss.cfg_scale, cfg.loss.min_dm_step_ratio,
                               cfg.loss.max_dm_step_ratio, cfg.loss.vsd_patches).to(device)
            fake_opt = make_optimizer(fake.parameters(), cfg.train, lr=cfg.loss.fake_lr)
            self.optimizers.append(accelerator.prepare(fake_opt))
            self.schedulers.append(make_scheduler(fake_opt, cfg.train))
            groups["vsd_fake_unet"] = trainable_parameters_by_group(accelerator.unwrap_model(fake))
        if accelerator.is_main_process:
            print("trainable parameters\n" + format_parameter_groups(groups))
        self.lpips = LPIPSLoss("vgg", cfg.loss.lpips_backbone).to(device) if cfg.loss.lpips_weight > 0 else None
        self.degradation = RealESRGANDegradation(load_degradation_config(cfg.data.degradation, cfg.data.degradation_overrides))
        self.prompts = build_prompt_extractor(cfg.prompt.extractor, cfg.prompt.tags, cfg.prompt.ram_weights,
                                              cfg.prompt.dape_weights, str(device))
        self.ema = None
        if cfg.ema:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(gen_params, decay=cfg.ema_decay)
            accelerator.register_for_checkpointing(self.ema)
        from ..data.datasets import HRImageDataset

        self.train_dataset = HRImageDataset(list(cfg.data.sources), crop_size=cfg.data.crop_size, seed=cfg.train.seed)

    def trainable_modules(self) -> list[nn.Module]:
        return [self.generator] + ([self.vsd.fake_unet] if self.vsd is not None else [])

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt and negative-prompt embeddings for a batch, encoded once per batch: (B, 77, D) each."""
        tags = self.prompts(images)
        prompts = [join_prompt(t, self.cfg.prompt.positive) for t in tags]
        emb = encode_prompts(self.tokenizer, self.text_encoder, prompts)
        neg = encode_prompts(self.tokenizer, self.text_encoder, [self.cfg.prompt.negative] * len(prompts))
        return emb, neg

    def train_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        cfg, acc = self.cfg, self.accelerator
        pair = self.degradation(batch["hr"], batch["position"], cfg.train.seed)  # lr (B,3,S/4,S/4), gt (B,3,S,S)
        gt = pair["gt"] * 2 - 1
        lr_up = F.interpolate(pair["lr"], size=gt.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1) * 2 - 1
        emb, neg = self.embed(batch["hr"])  # tags from the HR image in training (official code)
        sr, z0 = self.generator(lr_up, emb)
        l2 = F.mse_loss(sr.float(), gt.float())
        loss, logs = cfg.loss.l2_weight * l2, {"l2": l2.detach()}
        if self.lpips is not None:
            lp = self.lpips(sr, gt)
            loss = loss + cfg.loss.lpips_weight * lp
            logs["lpips"] = lp.detach()
        if self.vsd is not None and step >= cfg.loss.vsd_start:
            vsd, vlogs = self.vsd.generator_loss(z0, emb, neg)
            loss = loss + cfg.loss.vsd_weight * vsd
            logs.update(vlogs)
        acc.backward(loss)
        if self.vsd is not None:
            fake, flogs = self.vsd.fake_loss(z0, emb)
            acc.backward(fake)
            logs.update(flogs)
        if self.ema is not None and acc.sync_gradients:
            self.ema.step([p for p in self.generator.parameters() if p.requires_grad])
        return {"loss": loss.detach(), **logs}

    @torch.no_grad()
    def validate(self, step: int, run_dir: Path) -> dict[str, float]:
        if not (self.cfg.data.val_hr and self.cfg.data.val_lr):
            return {}
        from ..data.datasets import PairedImageDataset
        from .vae_eval import psnr_y

        ds = PairedImageDataset(self.cfg.data.val_hr, self.cfg.data.val_lr)
        items = [ds[i] for i in range(min(len(ds), self.cfg.data.num_val))]
        hr = torch.stack([it["hr"] for it in items]).to(self.accelerator.device)
        lr = torch.stack([it["lr"] for it in items]).to(self.accelerator.device)
        lr_up = F.interpolate(lr, size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1) * 2 - 1
        emb, _ = self.embed(lr)  # tags from the LR image at inference
        self.generator.eval()
        sr = (self.accelerator.unwrap_model(self.generator)(lr_up, emb)[0] + 1) / 2
        self.generator.train()
        if self.accelerator.is_main_process and self.cfg.train.tracker == "tensorboard":
            writer = self.accelerator.get_tracker("tensorboard").writer
            writer.add_images("val/bicubic_sr_hr", torch.cat([(lr_up + 1) / 2, sr, hr], dim=-1).cpu(), step)
        return {"psnr_y": float(psnr_y(sr, hr).mean())}

    def export(self, folder: Path) -> None:
        from ..export import save_tvt_export

        gen = self.accelerator.unwrap_model(self.generator)
        if self.ema is not None:
            self.ema.copy_to([p for p in gen.parameters() if p.requires_grad])
        save_tvt_export(folder, ce_unet=gen.unet, vae=gen.vae, base_model=self.cfg.sd_model, lora_config=self.lora_config,
                        prompt=join_prompt(self.cfg.prompt.tags, self.cfg.prompt.positive),
                        negative_prompt=self.cfg.prompt.negative, timestep=self.cfg.timestep)
