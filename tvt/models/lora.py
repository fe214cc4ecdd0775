"""LoRA (peft) on the CE-UNet's original SD layers and, optionally, on the VAE-D4 encoder.

Official TVT/OSEDiff target every conv / attention / feed-forward weight of the UNet; we do the same
but skip the CE-UNet layers that are trained in full (LoRA on a fully trained layer adds nothing).
"""
from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig
from torch import nn

from .ce_unet import is_fully_trained

# Official TVT/OSEDiff `l_grep`: sub-strings of the weight names that receive LoRA.
UNET_LORA_PATTERNS = ("to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in", "conv_shortcut",
                      "conv_out", "proj_out", "proj_in", "ff.net.2", "ff.net.0.proj")
VAE_ENCODER_LORA_PATTERNS = ("conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out", "to_k", "to_q", "to_v", "to_out.0")


def lora_target_modules(model: nn.Module, patterns=UNET_LORA_PATTERNS, within: str = "", skip=lambda name: False) -> list[str]:
    """Full names of Linear/Conv2d modules whose name matches ``patterns`` (official selection rule)."""
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)) or not name.startswith(within) or skip(name):
            continue
        if any(p in name for p in patterns):
            names.append(name)
    return names


def add_ce_unet_lora(ce_unet: nn.Module, rank: int = 4, alpha: float | None = None,
                     target_modules: list[str] | None = None, adapter_name: str = "default") -> LoraConfig:
    """Freeze the CE-UNet, add LoRA to its original SD layers, unfreeze the fully trained layers (Sec. 3.3)."""
    ce_unet.requires_grad_(False)
    targets = target_modules if target_modules is not None else lora_target_modules(ce_unet, skip=is_fully_trained)
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian", target_modules=targets)
    ce_unet.add_adapter(config, adapter_name=adapter_name)  # diffusers' peft integration: LoRA params trainable
    for name, p in ce_unet.named_parameters():
        if is_fully_trained(_base_name(name)) and "lora_" not in name:
            p.requires_grad_(True)
    return config


def add_vae_encoder_lora(vae: nn.Module, rank: int = 4, adapter_name: str = "default_encoder") -> LoraConfig:
    """LoRA on the VAE-D4 encoder (config switch in ISR training; off by default, as in the official release)."""
    targets = lora_target_modules(vae, VAE_ENCODER_LORA_PATTERNS, within="encoder.")
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=targets)
    vae.add_adapter(config, adapter_name=adapter_name)
    return config


def _base_name(name: str) -> str:
    return name.replace(".base_layer", "")


def trainable_parameters_by_group(model: nn.Module) -> dict[str, int]:
    """Parameter counts: LoRA (trainable), fully trained, frozen."""
    groups = {"lora": 0, "full": 0, "frozen": 0}
    for name, p in model.named_parameters():
        key = "frozen" if not p.requires_grad else ("lora" if "lora_" in name else "full")
        groups[key] += p.numel()
    return groups


def format_parameter_groups(named_groups: dict[str, dict[str, int]]) -> str:
    """A small table: model -> lora / full / frozen counts, in millions."""
    lines = [f"{'model':<16}{'LoRA':>10}{'full':>10}{'frozen':>10}  (M params)"]
    for model, g in named_groups.items():
        lines.append(f"{model:<16}{g['lora'] / 1e6:>10.3f}{g['full'] / 1e6:>10.3f}{g['frozen'] / 1e6:>10.3f}")
    return "\n".join(lines)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA into its base weight and drop the wrappers (in place): plain, fast layers for export."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge(adapter_names=list(module.lora_A.keys()))  # every adapter, active or not
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    for attr in ("peft_config",):
        if hasattr(model, attr):
            delattr(model, attr)
    if hasattr(model, "_hf_peft_config_loaded"):
        model._hf_peft_config_loaded = False
    return model


def fully_trained_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The fully trained layers' weights under plain (LoRA-free) names."""
    return {_base_name(k): v.detach().cpu().contiguous() for k, v in model.state_dict().items()
            if "lora_" not in k and is_fully_trained(_base_name(k))}


def save_fully_trained(model: nn.Module, path: str | Path) -> None:
    from safetensors.torch import save_file

    from ..io import atomic_path

    with atomic_path(path) as tmp:
        save_file(fully_trained_state_dict(model), str(tmp))


def load_fully_trained(model: nn.Module, path: str | Path) -> None:
    """Load weights saved by ``save_fully_trained`` into a model with or without LoRA wrappers."""
    from safetensors.torch import load_file

    weights = load_file(str(path))
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    by_base = {_base_name(k): k for k in params}
    missing = sorted(set(weights) - set(by_base))
    if missing:
        raise KeyError(f"{path}: {len(missing)} tensors have no place in the model, e.g. {missing[:3]}")
    with torch.no_grad():
        for k, v in weights.items():
            params[by_base[k]].copy_(v)
