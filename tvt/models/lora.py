"""LoRA (peft, through diffusers' adapter API) on the CE-UNet's original SD layers and, optionally, the VAE-D4 encoder.

Sec. 3.3: the replicated levels are trained in full, the rest of the UNet with rank-4 LoRA. Target layers follow
the official TVT/OSEDiff selection rule (sub-string patterns on weight names, biases and norms skipped), which
on the UNet covers attention to_q/to_k/to_v/to_out.0, proj_in/proj_out, ff.net.0.proj/ff.net.2 and every conv
(resnet conv1/conv2/conv_shortcut, down/upsamplers, conv_in/conv_out), but not time_emb_proj or the time
embedding. As in the official code, the layers trained in full carry LoRA too (``lora_on_fully_trained``).

Files: adapters are written by diffusers' ``save_lora_adapter`` (``pytorch_lora_weights.safetensors``, peft
key names, the LoraConfig in the safetensors metadata), the fully trained layers as a plain safetensors file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from peft import LoraConfig
from torch import nn

from .ce_unet import is_fully_trained

# Official TVT/OSEDiff `l_grep` (TVTModel.initialize_unet_TVT): sub-strings of weight names that get LoRA.
UNET_LORA_PATTERNS = ("to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in", "conv_shortcut",
                      "conv_out", "proj_out", "proj_in", "ff.net.2", "ff.net.0.proj")
# OSEDiff's initialize_vae: these patterns inside the encoder, plus quant_conv (not post_quant_conv).
VAE_ENCODER_LORA_PATTERNS = ("conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out", "to_k", "to_q", "to_v", "to_out.0")
# Official TVT/OSEDiff: LoraConfig(r=rank, init_lora_weights="gaussian", ...) with peft's default lora_alpha = 8,
# i.e. scaling alpha / r = 2 at rank 4, for the generator's adapters and the VSD fake UNet alike.
OFFICIAL_LORA_ALPHA = 8.0
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # diffusers' name, so its loaders read our files


def lora_target_modules(model: nn.Module, patterns=UNET_LORA_PATTERNS, within: str = "", skip=lambda name: False) -> list[str]:
    """Full names of Linear/Conv2d modules under ``within`` whose name contains one of ``patterns``.

    Equivalent to the official rule on parameter names (``pattern in name``, skipping biases and norms):
    only Linear/Conv2d weights ever match it.
    """
    return [name for name, module in model.named_modules()
            if isinstance(module, (nn.Linear, nn.Conv2d)) and name.startswith(within) and "norm" not in name
            and not skip(name) and any(p in name for p in patterns)]


def official_lora_groups(unet: nn.Module) -> dict[str, list[str]]:
    """The official split of LoRA targets into three adapters (TVTModel.initialize_unet_TVT / OSEDiff's
    initialize_unet): the first matching pattern decides; ``down_blocks``/``conv_in`` -> encoder, ``up_blocks``
    -> decoder, the rest (mid block, conv_out) -> others."""
    out: dict[str, list[str]] = {"encoder": [], "decoder": [], "others": []}
    for name in lora_target_modules(unet):
        group = "encoder" if ("down_blocks" in name or "conv_in" in name) else "decoder" if "up_blocks" in name else "others"
        out[group].append(name)
    return out


def add_unet_lora(unet: nn.Module, rank: int = 4, alpha: float = OFFICIAL_LORA_ALPHA,
                  fully_trained: Callable[[str], bool] = lambda name: False, lora_on_fully_trained: bool = True,
                  target_modules: list[str] | None = None, adapter_name: str = "default") -> LoraConfig:
    """Freeze ``unet``, add one LoRA adapter, unfreeze the ``fully_trained`` layers. Returns the LoraConfig.

    Targets: ``target_modules``, else the official rule on every layer (``lora_on_fully_trained``: the official
    code also puts LoRA on the layers it trains in full) or on the others only. One adapter over the union of the
    official three (encoder/decoder/others) is the same model: each layer belongs to exactly one of them.
    ``alpha`` defaults to the official 8 (peft's default; scaling 2 at rank 4).
    """
    unet.requires_grad_(False)
    if target_modules is None:
        target_modules = lora_target_modules(unet, skip=lambda n: False if lora_on_fully_trained else fully_trained(n))
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=target_modules)
    unet.add_adapter(config, adapter_name=adapter_name)  # diffusers' peft integration: LoRA params trainable
    for name, p in unet.named_parameters():
        if "lora_" not in name and fully_trained(name):
            p.requires_grad_(True)
    return config


def add_ce_unet_lora(ce_unet: nn.Module, rank: int = 4, alpha: float = OFFICIAL_LORA_ALPHA,
                     lora_on_fully_trained: bool = True, adapter_name: str = "default") -> LoraConfig:
    """LoRA on the CE-UNet, its replicated levels and conv_in/conv_out (FULLY_TRAINED_PREFIXES) trained in full
    (Sec. 3.3: "only the replicated layers undergo full parameter training"; official TVT.set_train)."""
    return add_unet_lora(ce_unet, rank, alpha, is_fully_trained, lora_on_fully_trained, adapter_name=adapter_name)


def add_vae_encoder_lora(vae_d4: nn.Module, rank: int = 4, alpha: float = OFFICIAL_LORA_ALPHA,
                         adapter_name: str = "default_encoder") -> LoraConfig:
    """LoRA on the VAE-D4 encoder and quant_conv (OSEDiff's rule; off by default: the official TVT adds none)."""
    vae_d4.requires_grad_(False)
    targets = lora_target_modules(vae_d4, VAE_ENCODER_LORA_PATTERNS, within="encoder.")
    targets += [n for n, m in vae_d4.named_modules() if n == "quant_conv" and isinstance(m, nn.Conv2d)]
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=targets)
    vae_d4.add_adapter(config, adapter_name=adapter_name)
    return config


# ---------------------------------------------------------------------------------------------
# Parameter groups
# ---------------------------------------------------------------------------------------------
def trainable_parameters_by_group(model: nn.Module) -> dict[str, int]:
    """Parameter counts: ``lora`` (trainable LoRA), ``full`` (other trainable), ``frozen``."""
    groups = {"lora": 0, "full": 0, "frozen": 0}
    for name, p in model.named_parameters():
        groups["frozen" if not p.requires_grad else ("lora" if "lora_" in name else "full")] += p.numel()
    return groups


def format_parameter_groups(named_groups: dict[str, dict[str, int]]) -> str:
    """A small table: model -> LoRA / full / frozen counts, in millions."""
    lines = [f"{'model':<16}{'LoRA':>10}{'full':>10}{'frozen':>10}  (M params)"]
    for model, g in named_groups.items():
        lines.append(f"{model:<16}{g['lora'] / 1e6:>10.3f}{g['full'] / 1e6:>10.3f}{g['frozen'] / 1e6:>10.3f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Adapters alone: save / load (diffusers' LoRA format) and merge
# ---------------------------------------------------------------------------------------------
def unwrap_peft(model: nn.Module) -> nn.Module:
    """The model inside a peft ``PeftModel`` wrapper; ``model`` itself when it is not wrapped."""
    inner = getattr(getattr(model, "base_model", None), "model", None)
    return inner if isinstance(inner, nn.Module) else model


def adapter_names(model: nn.Module) -> list[str]:
    return list(getattr(unwrap_peft(model), "peft_config", None) or {})


def has_unmerged_lora(model: nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


def save_lora_adapters(unet: nn.Module, folder: str | Path) -> list[str]:
    """Write every LoRA adapter of a UNet as diffusers' training examples do (``save_lora_weights``): one ->
    ``folder/pytorch_lora_weights.safetensors``, several -> ``folder/<adapter>/pytorch_lora_weights.safetensors``;
    keys ``unet.<name>.lora_A.weight``, the LoraConfig in the file's metadata. Read by ``load_lora_adapters``,
    diffusers' ``pipe.load_lora_weights(folder)`` or ``unet.load_lora_adapter(folder, prefix="unet",
    weight_name=LORA_WEIGHT_NAME)``. Returns the adapter names."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from peft.utils import get_peft_model_state_dict

    unet = unwrap_peft(unet)
    names = adapter_names(unet)
    if not names:
        raise ValueError("model has no LoRA adapters to save")
    for name in names:
        weights = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(unet, adapter_name=name).items()}
        StableDiffusionLoraLoaderMixin.save_lora_weights(
            Path(folder) / name if len(names) > 1 else folder, unet_lora_layers=weights, weight_name=LORA_WEIGHT_NAME,
            unet_lora_adapter_metadata=unet.peft_config[name].to_dict())
    return names


def lora_files(folder: str | Path) -> dict[str, Path]:
    """{adapter name: folder holding its LORA_WEIGHT_NAME}, as ``save_lora_adapters`` lays them out; {} if none."""
    folder = Path(folder)
    if (folder / LORA_WEIGHT_NAME).is_file():
        return {"default": folder}
    return {p.name: p for p in sorted(folder.iterdir()) if (p / LORA_WEIGHT_NAME).is_file()} if folder.is_dir() else {}


def load_lora_adapters(unet: nn.Module, folder: str | Path, trainable: bool = False) -> list[str]:
    """Attach the adapter(s) written by ``save_lora_adapters`` with diffusers' loader; all active."""
    found = lora_files(folder)
    if not found:
        raise FileNotFoundError(f"no {LORA_WEIGHT_NAME} in {folder} or its subfolders")
    for name, path in found.items():
        try:
            unet.load_lora_adapter(str(path), prefix="unet", adapter_name=name, weight_name=LORA_WEIGHT_NAME)
        except (RuntimeError, ValueError, KeyError) as err:  # shapes or names of another UNet
            raise ValueError(f"{path / LORA_WEIGHT_NAME} does not fit this UNet: {str(err).splitlines()[0]}") from None
    if len(found) > 1:
        unet.set_adapters(list(found))  # diffusers leaves only the last loaded adapter active
    for n, p in unet.named_parameters():
        if "lora_" in n:
            p.requires_grad_(trainable)
    return list(found)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA (active or not) into its base weight and drop the wrappers, in place: plain layers for export."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge(adapter_names=list(module.lora_A.keys()))
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, module.get_base_layer())
    if hasattr(model, "peft_config"):
        del model.peft_config
    if hasattr(model, "_hf_peft_config_loaded"):
        model._hf_peft_config_loaded = False
    return model


# ---------------------------------------------------------------------------------------------
# Fully trained layers alone
# ---------------------------------------------------------------------------------------------
def _base_name(name: str) -> str:
    return name.replace(".base_layer", "")


def fully_trained_state_dict(model: nn.Module, fully_trained: Callable[[str], bool] = is_fully_trained
                             ) -> dict[str, torch.Tensor]:
    """The fully trained layers' weights (default: the CE-UNet's FULLY_TRAINED_PREFIXES; an architecture's
    ``is_fully_trained`` otherwise) under plain, LoRA-free names."""
    return {_base_name(k): v.detach().cpu().contiguous() for k, v in model.state_dict().items()
            if "lora_" not in k and fully_trained(k)}


def save_fully_trained(model: nn.Module, path: str | Path, fully_trained: Callable[[str], bool] = is_fully_trained) -> None:
    """Write ``fully_trained_state_dict(model, fully_trained)`` as one safetensors file (atomically)."""
    from safetensors.torch import save_file

    from ..io import atomic_path

    weights = fully_trained_state_dict(model, fully_trained)
    if not weights:
        raise ValueError("no fully trained layers found: is this a CE-UNet?")
    with atomic_path(path) as tmp:
        save_file(weights, str(tmp))


def load_fully_trained(model: nn.Module, path: str | Path) -> None:
    """Load weights saved by ``save_fully_trained`` into a CE-UNet with or without LoRA wrappers."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"fully trained CE-UNet layers not found: {path}")
    weights = load_file(str(path))
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    by_base = {_base_name(k): k for k in tensors if "lora_" not in k}
    missing = sorted(set(weights) - set(by_base))
    if missing:
        raise KeyError(f"{path}: {len(missing)} tensors have no place in the model, e.g. {missing[:3]}")
    with torch.no_grad():
        for k, v in weights.items():
            dst = tensors[by_base[k]]
            if dst.shape != v.shape:
                raise ValueError(f"{path}: {k} has shape {tuple(v.shape)}, the model expects {tuple(dst.shape)}")
            dst.copy_(v)
