"""Converters from the official TVT release (github.com/Joyies/TVT) into our models.

Official layouts (read from its TVTModel.py):
- VAE-D4: a Lightning/LDM-style checkpoint, ``ckpt["state_dict"]`` with the VAE under the prefix
  ``vaeDe4.`` in diffusers naming (their AutoencoderKL copy without mid blocks: the same names as ours).
- UNet: ``torch.save`` of {"rank_unet", "unet_lora_encoder_modules", "unet_lora_decoder_modules",
  "unet_lora_others_modules", "state_dict_unet"}; the three lists are the target modules of the peft adapters
  ``default_encoder`` / ``default_decoder`` / ``default_others`` on the five-level CE-UNet, and
  ``state_dict_unet`` holds every LoRA tensor plus the fully trained layers under their wrapped names.
"""
from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig

from .lora import merge_lora
from .vae import AutoencoderKLD4, build_vae_d4

OFFICIAL_VAE_PREFIX = "vaeDe4."
OFFICIAL_ADAPTERS = ("encoder", "decoder", "others")


def _load(ckpt) -> dict:
    if isinstance(ckpt, dict):
        return ckpt
    path = Path(ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"official TVT checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)  # official files are pickled dicts


def convert_official_vae_d4(ckpt, **vae_kwargs) -> AutoencoderKLD4:
    """Official VAE-D4 checkpoint (path or loaded dict) -> AutoencoderKLD4 (config: official config2.json)."""
    raw = _load(ckpt)
    state = raw.get("state_dict", raw)
    weights = {k[len(OFFICIAL_VAE_PREFIX):]: v for k, v in state.items() if k.startswith(OFFICIAL_VAE_PREFIX)}
    if not weights:
        raise KeyError(f"no '{OFFICIAL_VAE_PREFIX}*' weights under 'state_dict': not an official TVT VAE-D4 checkpoint")
    vae = build_vae_d4("d4", **{"sample_size": 768, **vae_kwargs})
    result = vae.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise KeyError(f"official VAE-D4 does not match our layout: missing {result.missing_keys[:5]}, "
                       f"unexpected {result.unexpected_keys[:5]}")
    return vae


def load_official_unet(ckpt, ce_unet: torch.nn.Module, merge: bool = True) -> torch.nn.Module:
    """Put the official LoRA adapters and fully trained layers on ``ce_unet`` (5-level, SD weights); merge them."""
    raw = _load(ckpt)
    needed = {"rank_unet", "state_dict_unet", *(f"unet_lora_{a}_modules" for a in OFFICIAL_ADAPTERS)}
    if not needed <= raw.keys():
        raise KeyError(f"not an official TVT UNet checkpoint: missing {sorted(needed - raw.keys())}")
    for a in OFFICIAL_ADAPTERS:
        cfg = LoraConfig(r=raw["rank_unet"], init_lora_weights="gaussian", target_modules=raw[f"unet_lora_{a}_modules"])
        ce_unet.add_adapter(cfg, adapter_name=f"default_{a}")
    params = dict(ce_unet.named_parameters())
    unknown = [k for k in raw["state_dict_unet"] if k not in params]
    if unknown:
        raise KeyError(f"{len(unknown)} official UNet tensors have no place in the CE-UNet, e.g. {unknown[:3]}")
    with torch.no_grad():
        for k, v in raw["state_dict_unet"].items():
            params[k].copy_(v)
    return merge_lora(ce_unet) if merge else ce_unet
