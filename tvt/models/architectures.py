"""The one-step generator's architectures: TVT and every row of the paper's ablation Tables 5 and 7, in one registry.

    name     paper row                       VAE (where it comes from)                    UNet
    tvt      TVT (Tables 5, 7)               VAE-D4 (a transfer-trained run)             CE-UNet (LoRA + replicated levels)
    osediff  S1 = OSEDiff                    SD's VAE-D8                                  SD UNet (LoRA)
    s2       S2 VAE-D8-SC + UNet             SD's VAE-D8 + encoder->decoder skips         SD UNet (LoRA); skips trained
    s3       S3 VAE-D8C8 + UNet              8-channel D8 VAE (transfer-trained run)      SD UNet, conv_in/out widened
    s4       S4 VAE-D4 + UNet                VAE-D4                                       SD UNet at the D4 latent (LoRA)
    s5       S5 VAE-D4 + Prun-UNet           VAE-D4                                       SD UNet, 25 % of channels pruned
    v1, v2   Table 5's VAE-D4 variants       V1 / V2 VAE-D4 (transfer-trained runs)       CE-UNet

Training (tvt.train.isr), export/loading (tvt.export), inference and the complexity count (tvt.flops) all ask this
registry; nothing else names an architecture. A "trained" VAE is the ``vae_d4`` run input of the ISR config (its
layout is checked against ``vae_variant``); the others are built from SD's VAE-D8 (``sd_model``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from .ce_unet import FULLY_TRAINED_PREFIXES as CE_FULLY_TRAINED

VAE_SOURCES = ("sd_vae_d8", "vae_d8_sc", "trained")
UNET_KINDS = ("sd", "ce", "c8", "pruned")


@dataclass(frozen=True)
class Architecture:
    name: str
    row: str  # the paper's row label
    tables: str  # where the paper reports it
    paper_flops: float  # the paper's whole-model FLOPs (conv + linear MACs, tagger included)
    vae: str  # VAE_SOURCES
    unet: str  # UNET_KINDS
    vae_folder: str  # the VAE's folder in an export
    vae_variant: str | None = None  # VAE_VARIANTS layout a trained VAE must have
    lora: bool = True  # the UNet is LoRA-tuned; False: trained in full (S5)
    fully_trained: tuple[str, ...] = ()  # UNet layers trained in full beside the LoRA
    vae_trainable: tuple[str, ...] = ()  # VAE layers trained in the one-step training (S2's skips)

    def __post_init__(self):
        if self.vae not in VAE_SOURCES or self.unet not in UNET_KINDS:
            raise ValueError(f"{self.name}: vae must be one of {VAE_SOURCES}, unet one of {UNET_KINDS}")

    # ----- the UNet ------------------------------------------------------------------------
    def build_unet(self, sd_unet: nn.Module, copy_sd: bool = True) -> nn.Module:
        """This architecture's UNet initialised from SD 2.1's (works on the meta device); ``sd_unet`` is left as it
        is, and where the UNet is SD's own it is a copy unless ``copy_sd`` is False."""
        if self.unet == "ce":
            from .ce_unet import build_ce_unet_from_sd
            return build_ce_unet_from_sd(sd_unet)
        if self.unet == "c8":
            from .latent_channels import build_c8_unet_from_sd
            return build_c8_unet_from_sd(sd_unet)
        if self.unet == "pruned":
            from .pruned_unet import build_pruned_unet_from_sd
            return build_pruned_unet_from_sd(sd_unet)
        return copy.deepcopy(sd_unet) if copy_sd else sd_unet

    def is_fully_trained(self, name: str) -> bool:
        """True for UNet parameter/module names trained in full (LoRA wrapper names included)."""
        if not self.lora:
            return "lora_" not in name
        name = name.replace(".base_layer", "")
        return any(name == p or name.startswith(p + ".") for p in self.fully_trained)

    # ----- the VAE ---------------------------------------------------------------------------
    @property
    def vae_class(self) -> type:
        from diffusers import AutoencoderKL

        from .vae import AutoencoderKLD4
        from .vae_skip import AutoencoderKLSkip
        return {"sd_vae_d8": AutoencoderKL, "vae_d8_sc": AutoencoderKLSkip, "trained": AutoencoderKLD4}[self.vae]

    def load_vae(self, sd_model: str | Path, trained: str | Path | nn.Module | None = None) -> nn.Module:
        """The VAE a run of this architecture starts from: SD's VAE-D8 (``sd_model``), its skip-connected copy, or
        the ``trained`` VAE (a folder or module) checked against ``vae_variant``."""
        from .vae import load_vae_d4, load_vae_d8

        if self.vae == "trained":
            if trained is None:
                raise InputError(f"architecture '{self.name}' needs its trained VAE ({self.vae_variant}: vae_d4=<folder>)")
            vae = trained if isinstance(trained, nn.Module) else load_vae_d4(trained)
            self.check_vae(vae)
            return vae
        vae = load_vae_d8(sd_model)
        if self.vae == "vae_d8_sc":
            from .vae_skip import AutoencoderKLSkip
            return AutoencoderKLSkip.from_vae_d8(vae)
        return vae

    def check_vae(self, vae: nn.Module) -> None:
        from .vae import vae_variant_of

        found = vae_variant_of(vae.config)
        if self.vae_variant is not None and found != self.vae_variant:
            raise InputError(f"architecture '{self.name}' needs a {self.vae_variant} VAE, got a "
                             f"{found or 'unknown'} layout (block_out_channels={list(vae.config.block_out_channels)})")

    def set_vae_trainable(self, vae: nn.Module) -> list[nn.Parameter]:
        """Unfreeze the VAE layers this architecture trains in the one-step training; returns them."""
        params = [p for n, p in vae.named_parameters() if any(n.startswith(pre + ".") for pre in self.vae_trainable)]
        for p in params:
            p.requires_grad_(True)
        return params

    # ----- latents ----------------------------------------------------------------------------
    def to_sd_latent(self, z: torch.Tensor) -> torch.Tensor:
        """The x0 latent in SD's 4-channel space (what the VSD loss's SD UNets score): S3's 8 channels via A^+."""
        from .latent_channels import narrow_latent
        return narrow_latent(z)


_D4_TRAINED = dict(vae="trained", vae_folder="vae_d4")
_CE = dict(unet="ce", fully_trained=CE_FULLY_TRAINED)

ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in (
    Architecture("tvt", "TVT (VAE-D4 + CE-UNet)", "Tables 5, 7", 1.97e12, vae_variant="d4", **_D4_TRAINED, **_CE),
    Architecture("osediff", "S1 (VAE-D8 + UNet)", "Table 7", 2.27e12, vae="sd_vae_d8", unet="sd", vae_folder="vae"),
    Architecture("s2", "S2 (VAE-D8-SC + UNet)", "Table 7", 2.27e12, vae="vae_d8_sc", unet="sd", vae_folder="vae",
                 vae_trainable=("skip_convs",)),
    Architecture("s3", "S3 (VAE-D8C8 + UNet)", "Table 7", 2.27e12, vae="trained", vae_variant="d8c8", unet="c8",
                 vae_folder="vae_d8c8", fully_trained=("conv_in", "conv_out")),
    Architecture("s4", "S4 (VAE-D4 + UNet)", "Table 7", 2.59e12, vae_variant="d4", unet="sd", **_D4_TRAINED),
    Architecture("s5", "S5 (VAE-D4 + Prun-UNet)", "Table 7", 2.00e12, vae_variant="d4", unet="pruned", lora=False,
                 **_D4_TRAINED),
    Architecture("v1", "V1 (VAE-D4 128/256/512 + mid block)", "Table 5", 3.02e12, vae_variant="v1", **_D4_TRAINED, **_CE),
    Architecture("v2", "V2 (VAE-D4 128/256/512)", "Table 5", 2.40e12, vae_variant="v2", **_D4_TRAINED, **_CE),
)}


def get_architecture(name: str) -> Architecture:
    """The registry entry of ``name``; an InputError naming the choices otherwise."""
    if name not in ARCHITECTURES:
        raise InputError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got '{name}'")
    return ARCHITECTURES[name]


__all__ = ["Architecture", "ARCHITECTURES", "get_architecture"]
