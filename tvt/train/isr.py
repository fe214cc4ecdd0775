"""One-step TVT Real-ISR training (paper Sec. 3.3, Fig. 2b), as the official train.py does it (OSEDiff-style).

    HR 512 crop (hflip) --Real-ESRGAN degradation--> LR 128 --resized back, random mode, 8 bit--> lr_up 512
      --> VAE-D4 encoder (posterior sample) --> CE-UNet at t = 1 (prompt: RAM tags of the HR) --> x0
      --> frozen VAE-D4 decoder --> SR;          loss = 1 * L2 + 2 * LPIPS + 1 * VSD   (Eq. 7)

Trainable: the CE-UNet's LoRA (rank 4, alpha 8) plus its fully trained layers (tvt.models.ce_unet.
FULLY_TRAINED_PREFIXES) and, with its own optimizer, the LoRA of the VSD "fake" SD UNet. Everything else is
frozen. ``architecture`` switches to any row of Tables 5 and 7 (tvt.models.architectures: S1 = OSEDiff ... S5, V1, V2).
Every default below is the official release's; docs/fidelity.md lists each with its source.
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

from ..config import ConfigError
from ..losses.perceptual import LPIPSLoss
from ..losses.vsd import VSDLoss
from ..models.architectures import ARCHITECTURES
from ..models.ce_unet import load_sd_unet
from ..models.generator import GENERATOR_TIMESTEP, OneStepGenerator
from ..models.loading import SD21_BASE
from ..models.lora import (OFFICIAL_LORA_ALPHA, add_unet_lora, add_vae_encoder_lora,
                           format_parameter_groups, official_lora_groups, trainable_parameters_by_group)
from ..models.sd21 import downscale_factor
from ..prompts import (TRAIN_NEGATIVE_PROMPT, PromptSpec, build_prompt_extractor, encode_prompts,
                       official_inference_prompt)
from .memory import compute_dtype, store_frozen_weights
from .optim import make_optimizer, make_scheduler
from .precision import run_in_float32, tagger_dtype
from .stage import Stage
from .train_config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class ISRDataConfig:
    # each a path or {path, stride, weight, resize} (tvt.data.mix.Source); a path alone: every crop_size window
    # at stride 64 is a sample. Official (TVT README): LSDIR cut into stride-64 windows, FFHQ-10k resized whole
    sources: list = field(default_factory=lambda: [{"path": "${data:lists/lsdir.txt}", "stride": 64},
                                                   {"path": "${data:lists/ffhq10k.txt}", "resize": True}])
    crop_size: int = 512
    use_hflip: bool = True  # official: horizontal flip only
    use_rot: bool = False
    degradation: str = "realesrgan"  # name in configs/degradation/ or a YAML path
    degradation_overrides: list = field(default_factory=list)
    val_hr: Optional[str] = None  # paired folders for validation (e.g. RealSR HR and LR)
    val_lr: Optional[str] = None
    num_val: int = 4


@dataclass
class ISRLossConfig:
    l2_weight: float = 1.0
    lpips_weight: float = 2.0
    lpips_backbone: str = "pretrained"
    vsd_weight: float = 1.0
    fake_weight: float = 1.0  # official lambda_vsd_lora
    vsd_start: int = 0
    cfg_scale: float = 7.5
    min_dm_step_ratio: float = 0.25
    max_dm_step_ratio: float = 0.75
    vsd_patches: bool = True  # split the D4 latent into 2x2 patches of SD's native size (official TVT)
    # Which LoRA of the fake UNet trains. Official: three adapters are added and diffusers' add_adapter leaves only
    # the last ("others": mid block + conv_out) active, so only that one learns. "all": every official target.
    fake_lora: str = "others"
    fake_lr: Optional[float] = None  # the fake UNet's LoRA; defaults to train.lr (official)


def one_step_train_config(run_name: str) -> TrainConfig:
    """The one-step recipe's optimisation defaults, shared by ISR and STISR training (docs/fidelity.md, a row each)."""
    return TrainConfig(run_name=run_name, lr=5e-5, batch_size=2, grad_accum=2, weight_decay=1e-2,
                       lr_scheduler="constant")


@dataclass
class ISRConfig:
    sd_model: str = SD21_BASE
    architecture: str = "tvt"  # tvt | osediff (S1) | s2 | s3 | s4 | s5 | v1 | v2 (tvt.models.architectures)
    vae_d4: str = "latest:vae_stage2"  # the trained VAE (VAE-D4; V1/V2; S3's VAE-D8C8): a folder or latest:<run_name>
    lora_rank: int = 4
    lora_alpha: float = OFFICIAL_LORA_ALPHA  # official LoraConfig(r=4): peft's default alpha 8, scaling 2
    encoder_lora: bool = False  # official TVT: off (OSEDiff trains a VAE-encoder LoRA: set true for osediff)
    lora_on_fully_trained: bool = True  # official: LoRA on every target, the fully trained layers too
    timestep: int = GENERATOR_TIMESTEP  # Sec. 3.3: "the time step is set to 1 in our work"
    sample_posterior: bool = True  # official: vae.encode(x).latent_dist.sample()
    # compute: frozen Linear/Conv weights of the models run under autocast (generator UNet, text encoder, LPIPS) stored
    # in the fp16/bf16 autocast computes them in (same numbers, half the memory); fp32: kept as loaded (official: fp32,
    # cast by autocast at every call). The fake-score UNet computes in fp32 (tvt.train.precision): its stay fp32
    frozen_dtype: str = "compute"
    ema: bool = False
    ema_decay: float = 0.999
    data: ISRDataConfig = field(default_factory=ISRDataConfig)
    prompt: PromptSpec = field(default_factory=lambda: PromptSpec(negative=TRAIN_NEGATIVE_PROMPT))  # training (HR tags)
    # written into the export, how to run the model: the official one (RAM + DAPE tags of the upscaled LR, then
    # "clean, high-resolution, 8k"; tvt.prompts); weight paths from the config, or from_pretrained's at inference
    inference_prompt: PromptSpec = field(default_factory=official_inference_prompt)
    loss: ISRLossConfig = field(default_factory=ISRLossConfig)
    train: TrainConfig = field(default_factory=lambda: one_step_train_config("isr"))


class ISRStage(Stage):
    """One-step Real-ISR training of TVT (CE-UNet LoRA + replicated levels) with L2 + LPIPS + VSD."""

    Config = ISRConfig
    name = "isr"
    run_inputs = ("vae_d4",)
    optimizer_names = ("generator", "fake score UNet")

    def setup(self, accelerator) -> None:
        from diffusers import DDPMScheduler
        from transformers import CLIPTextModel, CLIPTokenizer

        from ..data.degradation import DegradeSample, load_degradation_config
        from ..models.loading import require_pretrained

        cfg, device = self.cfg, accelerator.device
        if cfg.architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got '{cfg.architecture}'")
        self.arch = arch = ARCHITECTURES[cfg.architecture]
        if cfg.frozen_dtype not in ("compute", "fp32"):
            raise ConfigError(f"frozen_dtype must be 'compute' or 'fp32', got '{cfg.frozen_dtype}'")
        dtype = compute_dtype(accelerator)
        frozen_dtype = dtype if cfg.frozen_dtype == "compute" else torch.float32
        ckpt = cfg.train.gradient_checkpointing
        self.tokenizer = require_pretrained(CLIPTokenizer, cfg.sd_model, what="SD 2.1 tokenizer", subfolder="tokenizer")
        self.text_encoder = require_pretrained(CLIPTextModel, cfg.sd_model, what="SD 2.1 text encoder",
                                               subfolder="text_encoder").eval().requires_grad_(False)
        store_frozen_weights(self.text_encoder, frozen_dtype)  # on the CPU: no fp32 copy ever on the device
        self.text_encoder.to(device)
        self.scheduler = require_pretrained(DDPMScheduler, cfg.sd_model, what="SD 2.1 scheduler", subfolder="scheduler")
        sd_unet = load_sd_unet(cfg.sd_model)  # fp32, CPU
        # Generator (tvt.models.architectures): VAE (frozen, fp32, optional encoder LoRA; S2's skips trained) + UNet
        # (LoRA, with the architecture's fully trained layers: the CE-UNet's replicated levels; S5's wholly in full).
        self.vae = arch.load_vae(cfg.sd_model, cfg.vae_d4 if arch.vae == "trained" else None).requires_grad_(False)
        arch.set_vae_trainable(self.vae)
        if cfg.encoder_lora:
            add_vae_encoder_lora(self.vae, cfg.lora_rank, cfg.lora_alpha)
        self.unet = arch.build_unet(sd_unet)
        if arch.lora:
            self.lora_config = add_unet_lora(self.unet, cfg.lora_rank, cfg.lora_alpha, arch.is_fully_trained,
                                             cfg.lora_on_fully_trained)
        else:
            self.lora_config = None
            self.unet.requires_grad_(True)
        store_frozen_weights(self.unet, frozen_dtype)
        if ckpt:  # memory only: the same gradients
            self.unet.enable_gradient_checkpointing()
            self.vae.enable_gradient_checkpointing()
        self.generator = accelerator.prepare(OneStepGenerator(self.vae, self.unet, self.scheduler.alphas_cumprod,
                                                              cfg.timestep, cfg.sample_posterior))
        gen_params = [p for p in self.generator.parameters() if p.requires_grad]
        self.optimizers = [accelerator.prepare(make_optimizer(gen_params, cfg.train))]
        self.schedulers = [make_scheduler(self.optimizers[0].optimizer, cfg.train)]
        groups = {"unet": trainable_parameters_by_group(self.unet), "vae": trainable_parameters_by_group(self.vae)}
        # VSD: frozen real SD UNet and a LoRA-tuned fake copy (its own optimizer).
        self.vsd = None
        if cfg.loss.vsd_weight > 0:
            if cfg.loss.fake_lora not in ("others", "all"):
                raise ConfigError(f"loss.fake_lora must be 'others' or 'all', got '{cfg.loss.fake_lora}'")
            fake = copy.deepcopy(sd_unet)  # official unet_update: the SD weights, its LoRA in fp32
            targets = official_lora_groups(fake)["others"] if cfg.loss.fake_lora == "others" else None
            add_unet_lora(fake, cfg.lora_rank, cfg.lora_alpha, target_modules=targets)  # the generator's LoraConfig
            run_in_float32(fake)  # official: fp32 weights, called outside autocast (tvt.train.precision)
            if ckpt:
                fake.enable_gradient_checkpointing()
            fake = accelerator.prepare(fake)
            # the frozen real UNet wholly in the compute dtype, as the official unet_fix (weight_dtype)
            real = sd_unet.to(device, dtype=dtype).eval().requires_grad_(False)
            # SD's UNets are trained on 64x64 latents: official TVT splits the D4 latent into 2x2 patches
            patches = cfg.loss.vsd_patches and downscale_factor(self.vae.config) == 4
            self.vsd = VSDLoss(real, fake, self.scheduler, cfg.loss.cfg_scale, cfg.loss.min_dm_step_ratio,
                               cfg.loss.max_dm_step_ratio, patches=patches).to(device)
            fake_opt = make_optimizer(fake.parameters(), cfg.train, lr=cfg.loss.fake_lr)
            self.optimizers.append(accelerator.prepare(fake_opt))
            self.schedulers.append(make_scheduler(fake_opt, cfg.train))
            groups["vsd_fake_unet"] = trainable_parameters_by_group(accelerator.unwrap_model(fake))
        del sd_unet
        if accelerator.is_main_process:
            log.info("trainable parameters\n%s", format_parameter_groups(groups))
        self.lpips = None
        if cfg.loss.lpips_weight > 0:  # run under the training autocast (official: a prepared model, train.py:146)
            self.lpips = LPIPSLoss("vgg", cfg.loss.lpips_backbone)
            store_frozen_weights(self.lpips, frozen_dtype)
            self.lpips.to(device)
        # the Real-ESRGAN degradation, per sample in the data loader's workers (sample_transform)
        self.degradation = DegradeSample(load_degradation_config(cfg.data.degradation, cfg.data.degradation_overrides),
                                         cfg.train.seed, resize_back=True)
        self.prompts = build_prompt_extractor(cfg.prompt, str(device)).set_dtype(tagger_dtype(device))
        self.negative_embeds = self._encode([cfg.prompt.negative])  # (1, 77, D)
        self.ema = None
        if cfg.ema:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(gen_params, decay=cfg.ema_decay)
            accelerator.register_for_checkpointing(self.ema)
        self.train_dataset = self.build_train_dataset()

    def build_train_dataset(self):
        """HR crops of the sources (the LR comes from sample_transform); the STISR stage reads real pairs instead."""
        from ..data.datasets import HRImageDataset

        cfg = self.cfg
        return HRImageDataset(list(cfg.data.sources), crop_size=cfg.data.crop_size, use_flip=cfg.data.use_hflip,
                              use_rot=cfg.data.use_rot, seed=cfg.train.seed)

    def trainable_modules(self) -> list[nn.Module]:
        return [self.generator] + ([self.vsd.fake_unet] if self.vsd is not None else [])

    def frozen_modules(self) -> list[nn.Module]:
        """Every model of the step (trainable ones included: their frozen weights), for memory accounting."""
        vsd = [self.vsd.real_unet] if self.vsd is not None else []
        return self.trainable_modules() + vsd + [self.text_encoder] + ([self.lpips] if self.lpips is not None else [])

    def sample_transform(self):
        """HR crop -> + lr, lr_up, gt: the Real-ESRGAN degradation seeded by (train.seed, position), in the workers."""
        return self.degradation

    def _encode(self, texts: list[str]) -> torch.Tensor:
        """CLIP embeddings (B, 77, D), float32. Under the training autocast, as the official text encoder runs
        inside the prepared model's forward: its Linear weights may be stored in the compute dtype."""
        with self.accelerator.autocast():
            return encode_prompts(self.tokenizer, self.text_encoder, texts).float()

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) in [0, 1] -> prompt and negative-prompt embeddings (B, 77, D) each, one CLIP call.

        Official: f"{tags}, {positive}" with RAM tags of each image."""
        texts = [self.cfg.prompt.text(t) for t in self.prompts(images)]
        return self._encode(texts), self.negative_embeds.expand(len(texts), -1, -1)

    def train_step(self, batch: dict, step: int):
        """batch: hr, gt, lr_up (B, 3, S, S) and lr (B, 3, S/4, S/4) in [0, 1], made per sample by the workers.

        Yields the generator's loss, then the fake score's, which the Trainer backpropagates and updates in turn
        (official train.py:210-213, then 224-227). The fake score learns on the detached latent, so updating the
        generator in between changes none of its numbers."""
        cfg = self.cfg
        gt = batch["gt"] * 2 - 1  # (B, 3, S, S) in [-1, 1]: the plain HR crop (no USM, as official)
        lr_up = batch["lr_up"] * 2 - 1  # (B, 3, S, S): the LR resized back, the generator's input
        emb, neg = self.embed(batch["hr"])  # tags of the HR crop in training (official train.py)
        sr, z0 = self.generator(lr_up, emb)
        l2 = F.mse_loss(sr.float(), gt.float())
        loss, logs = cfg.loss.l2_weight * l2, {"l2": l2.detach()}
        if self.lpips is not None:
            with self.accelerator.autocast():
                lp = self.lpips(sr, gt)
            loss = loss + cfg.loss.lpips_weight * lp
            logs["lpips"] = lp.detach()
        sd_latent = self.arch.to_sd_latent(z0) if self.vsd is not None else None  # SD's 4 channels
        if self.vsd is not None and step >= cfg.loss.vsd_start:
            vsd, vlogs = self.vsd.generator_loss(sd_latent, emb, neg)
            loss = loss + cfg.loss.vsd_weight * vsd
            logs.update(vlogs)
        yield loss, {"loss": loss.detach(), **logs}
        if self.vsd is not None:
            fake, flogs = self.vsd.fake_loss(sd_latent.detach(), emb)
            yield cfg.loss.fake_weight * fake, flogs

    def after_optimizer_step(self) -> None:
        if self.ema is not None:
            self.ema.step([p for p in self.generator.parameters() if p.requires_grad])

    @torch.no_grad()
    def validate(self, step: int, run_dir: Path) -> dict[str, float]:
        if not (self.cfg.data.val_hr and self.cfg.data.val_lr):
            return {}
        from ..data.datasets import PairedImageDataset
        from ..inference.pipeline import restore_upsampled, stride_of
        from ..inference.resize import resize_bicubic
        from ..metrics.image import psnr_y

        ds = PairedImageDataset(self.cfg.data.val_hr, self.cfg.data.val_lr)
        items = [ds[i] for i in range(min(len(ds), self.cfg.data.num_val))]
        hr = torch.stack([it["hr"] for it in items]).to(self.accelerator.device)
        lr = torch.stack([it["lr"] for it in items])
        # as the inference pipeline does it (its own code): PIL bicubic, pad, one step, crop, AdaIN colour fix
        lr_up = resize_bicubic(lr, tuple(hr.shape[-2:]), "pil").to(self.accelerator.device)  # (B, 3, H, W) in [0, 1]
        emb, _ = self.embed(lr.to(self.accelerator.device))  # tags from the LR image at inference
        gen = self.accelerator.unwrap_model(self.generator)
        self.generator.eval()
        with torch.no_grad(), self.accelerator.autocast():  # as in training: frozen weights may be fp16/bf16
            sr = restore_upsampled(gen, lr_up, emb, stride_of(gen))
        self.generator.train()
        if self.accelerator.is_main_process and self.cfg.train.tracker == "tensorboard":
            writer = self.accelerator.get_tracker("tensorboard").writer
            writer.add_images("val/bicubic_sr_hr", torch.cat([lr_up, sr, hr], dim=-1).cpu(), step)
        return {"psnr_y": float(psnr_y(sr, hr).mean())}

    def export(self, folder: Path) -> None:
        from ..export import save_tvt_export

        gen = self.accelerator.unwrap_model(self.generator)
        if self.ema is not None:
            self.ema.copy_to([p for p in gen.parameters() if p.requires_grad])
        save_tvt_export(folder, ce_unet=gen.unet, vae=gen.vae, base_model=self.cfg.sd_model, lora_config=self.lora_config,
                        architecture=self.cfg.architecture, prompt=self.cfg.inference_prompt,
                        timestep=self.cfg.timestep)

