"""The exported-model folder: what ISR training writes and what the inference pipeline loads.

    export_dir/
      tvt_config.json                     what diffusers has no field for: format, architecture, timestep, the
                                          PromptSpec the model is run with, base model (absolute when a folder),
                                          and "files": every other file with its size (loading checks them)
      pytorch_lora_weights.safetensors    the UNet's LoRA in diffusers' format (``save_lora_weights``, as its
                                          training examples write it): diffusers' ``load_lora_weights`` reads it
      <adapter>/pytorch_lora_weights.safetensors   instead, one per adapter when there are several
      ce_unet_trainable.safetensors       CE-UNet layers trained in full (the replicated levels, Sec. 3.3)
      vae_d4/  (TVT, S4) or vae/ (OSEDiff) diffusers save_pretrained; a VAE-encoder LoRA is merged in before saving
      unet/                               only for ``full_unet``: the whole UNet, LoRA merged
      text_encoder/ tokenizer/ scheduler/ only for a self-contained export

Only what training changed is stored; everything else of the UNet, the text encoder, tokenizer and
scheduler come from ``base_model`` (SD 2.1-base), so an export is ~100 MB instead of ~3.5 GB.
Assumption (checked by the round-trip test): weights outside the LoRA and the fully trained layers
are the base model's frozen weights.

Exports written before the LoRA moved to diffusers' format ("tvt-export-v1": peft folders under
``ce_unet_lora/``) still load.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import DamagedWeightsError, InputError, MissingWeightsError
from .io import atomic_dir
from .models.architectures import ARCHITECTURES, get_architecture
from .models.generator import GENERATOR_TIMESTEP
from .models.lora import (LORA_WEIGHT_NAME, adapter_names, has_unmerged_lora, load_fully_trained, load_lora_adapters,
                          lora_files, merge_lora, save_fully_trained, save_lora_adapters, unwrap_peft)
from .models.loading import TVTComponents, check_safetensors, load_text_parts, require_pretrained
from .prompts import PromptSpec

FORMAT = "tvt-export-v2"
FORMAT_V1 = "tvt-export-v1"
CONFIG_NAME = "tvt_config.json"
TRAINABLE_NAME = "ce_unet_trainable.safetensors"
_PARTS = ("text_encoder", "tokenizer", "scheduler")


def vae_folder(architecture: str) -> str:
    return get_architecture(architecture).vae_folder


# ---------------------------------------------------------------------------------------------
# Save
# ---------------------------------------------------------------------------------------------
def save_tvt_export(
    export_dir: str | Path,
    *,
    ce_unet: nn.Module,
    vae: nn.Module,
    base_model: str | Path,
    prompt: PromptSpec | None = None,
    architecture: str = "tvt",
    timestep: int = GENERATOR_TIMESTEP,
    extra: dict | None = None,
    full_unet: bool = False,
    text_encoder: nn.Module | None = None,
    tokenizer: Any = None,
    scheduler: Any = None,
    lora_config: Any = None,
) -> Path:
    """Write an export folder atomically (temp folder beside ``export_dir``, then renamed over it).

    ce_unet: the CE-UNet (TVT) or SD UNet (OSEDiff, S4), with its LoRA attached (diffusers ``add_adapter``
        or a peft model) or already merged/absent. Not modified.
    vae: VAE-D4 (TVT, S4) or VAE-D8 (OSEDiff); an attached encoder LoRA is merged into a copy before saving.
    base_model: SD 2.1-base, a hub id or a folder (stored as an absolute path, so the export loads from anywhere).
    prompt: the PromptSpec the model is meant to be run with; inference builds the same extractor by default.
    extra: JSON-serialisable fields stored under "extra" (training step, config, metrics).
    full_unet: store the whole UNet as ``unet/`` (LoRA merged) instead of LoRA + trained layers; needed when the
        UNet is not "base + LoRA + trained layers", e.g. after the LoRA was merged.
    text_encoder, tokenizer, scheduler: stored as subfolders when given (a self-contained export, used for
        tiny test models); otherwise they come from ``base_model`` at load time.
    lora_config: unused; the LoraConfig travels inside the LoRA file (kept so older callers keep working).
    """
    if architecture not in ARCHITECTURES:
        raise InputError(f"architecture must be one of {tuple(ARCHITECTURES)}, got '{architecture}'")
    unet = unwrap_peft(ce_unet)
    clash = set(adapter_names(unet)) & {"unet", "vae", "vae_d4", *_PARTS}
    if clash:
        raise InputError(f"LoRA adapter names {sorted(clash)} would clash with the export's folders: rename them")
    base = Path(str(base_model)).expanduser()
    with atomic_dir(export_dir) as tmp:
        _merged_copy(vae).save_pretrained(tmp / vae_folder(architecture))
        if full_unet or not ARCHITECTURES[architecture].lora:  # S5's pruned UNet is trained whole
            _merged_copy(unet).save_pretrained(tmp / "unet")
        else:
            if has_unmerged_lora(unet):
                save_lora_adapters(unet, tmp)
            arch = ARCHITECTURES[architecture]
            if arch.fully_trained:  # the CE-UNet's replicated levels (Sec. 3.3), S3's widened conv_in/out
                save_fully_trained(unet, tmp / TRAINABLE_NAME, arch.is_fully_trained)
        for name, part in zip(_PARTS, (text_encoder, tokenizer, scheduler)):
            if part is not None:
                part.save_pretrained(tmp / name)
        cfg = {
            "format": FORMAT,
            "architecture": architecture,
            "timestep": int(timestep),
            "base_model": str(base.resolve()) if base.is_dir() else str(base_model),
            "prompt": (prompt or PromptSpec()).to_dict(),
            "extra": _jsonable(extra or {}),
            # every file the export holds, with its size: loading refuses the export when one is missing or cut short
            "files": {p.relative_to(tmp).as_posix(): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()},
        }
        (tmp / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))
    return Path(export_dir)


def _merged_copy(model: nn.Module) -> nn.Module:
    """``model`` without LoRA wrappers: a merged copy when it has any (the caller's model is left untouched)."""
    model = unwrap_peft(model)
    return merge_lora(copy.deepcopy(model)) if has_unmerged_lora(model) else model


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


# ---------------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------------
def prompt_spec_of(config: dict) -> PromptSpec:
    """The PromptSpec an export records; exports written before specs existed stored {"positive", "negative"}:
    a fixed prompt, which is what they were trained with."""
    stored = config.get("prompt") or {}
    if "extractor" in stored:
        return PromptSpec.from_dict(stored)
    return PromptSpec(extractor="fixed", template="{positive}", positive=stored.get("positive", ""),
                      negative=stored.get("negative", ""))


def read_export_config(export_dir: str | Path) -> dict:
    path = Path(export_dir) / CONFIG_NAME
    if not path.is_file():
        raise InputError(f"{export_dir} is not a TVT export folder: {CONFIG_NAME} missing")
    cfg = json.loads(path.read_text())
    if cfg.get("format") not in (FORMAT, FORMAT_V1):
        raise InputError(f"{path}: unknown format '{cfg.get('format')}', expected '{FORMAT}' (or '{FORMAT_V1}'); "
                         "is this tvt older than the export?")
    if not isinstance(cfg.get("timestep"), int):  # every export tvt writes records it; no guess stands in for it
        raise InputError(f"{path}: no integer 'timestep' (the generator's diffusion timestep); add the one the model "
                         f"was trained at: TVT's is {GENERATOR_TIMESTEP} (paper Sec. 3.3, official --time_step 1)")
    return cfg


def is_tvt_export(path: str | Path) -> bool:
    return (Path(path) / CONFIG_NAME).is_file()


def load_tvt_export(
    export_dir: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    base_model: str | Path | None = None,
) -> TVTComponents:
    """Rebuild the models of an export folder, LoRA merged; ``base_model`` overrides the stored SD 2.1 path/hub id."""
    from diffusers import UNet2DConditionModel

    from .models.ce_unet import load_sd_unet

    export_dir = Path(export_dir)
    cfg = read_export_config(export_dir)
    arch = cfg["architecture"]
    base = str(base_model or cfg["base_model"])
    has_unet = (export_dir / "unet").is_dir()
    check_export_files(export_dir, cfg, has_unet)
    self_contained = all((export_dir / n).is_dir() for n in _PARTS)
    te, tok, sched = load_text_parts(export_dir if self_contained else base)
    if has_unet:
        unet = require_pretrained(UNet2DConditionModel, export_dir / "unet", what="exported UNet")
    else:
        unet = load_sd_unet(base)
        unet = get_architecture(arch).build_unet(unet, copy_sd=False)
    vae = require_pretrained(get_architecture(arch).vae_class, export_dir / cfg.get("vae", vae_folder(arch)),
                             what=f"exported VAE of {get_architecture(arch).row}")

    try:
        if (export_dir / TRAINABLE_NAME).is_file():
            load_fully_trained(unet, export_dir / TRAINABLE_NAME)
        if lora_files(export_dir):
            load_lora_adapters(unet, export_dir)
        elif (export_dir / "ce_unet_lora").is_dir():
            _attach_v1_lora(unet, export_dir / "ce_unet_lora")
    except (KeyError, ValueError) as err:
        raise InputError(f"{export_dir}: its weights do not fit the UNet of base model '{base}' (is it SD 2.1-base?): "
                         f"{str(err).splitlines()[0]}") from None
    merge_lora(unet)  # merged for speed: inference never needs the adapters separately

    for m in (vae, unet, te):
        m.to(device).eval().requires_grad_(False)
        if dtype != torch.float32:  # loaded in fp32; only cast when asked (diffusers logs on every cast)
            m.to(dtype=dtype)
    return TVTComponents(vae=vae, unet=unet, text_encoder=te, tokenizer=tok, scheduler=sched, architecture=arch,
                         timestep=cfg["timestep"], base_model=base,
                         prompt=prompt_spec_of(cfg), config=cfg)


def check_export_files(export_dir: Path, cfg: dict, has_unet: bool) -> None:
    """Refuse an export a part of which is missing or damaged, naming the file: the base model's weights never stand
    in for trained ones. The parts are those its config lists ("files"); for exports written before the list, the
    fully trained layers their architecture has. Safetensors files must also be whole (``check_safetensors``)."""
    listed = cfg.get("files")
    if listed is None:
        listed = {TRAINABLE_NAME: None} if get_architecture(cfg["architecture"]).fully_trained and not has_unet else {}
    missing = [name for name in listed if not (export_dir / name).is_file()]
    if missing:
        raise MissingWeightsError(f"export {export_dir} is incomplete: {', '.join(missing)} missing (its {CONFIG_NAME} "
                                  "lists them); copy the whole export folder again")
    for name, size in listed.items():
        path = export_dir / name
        if size is not None and path.stat().st_size != size:
            raise DamagedWeightsError(f"{path} is damaged: {path.stat().st_size} bytes where {size} were written "
                                      "(a partial copy?); copy the export folder again")
    for path in sorted(export_dir.rglob("*.safetensors")):
        check_safetensors(path)


def _attach_v1_lora(unet: nn.Module, folder: Path) -> None:
    """A "tvt-export-v1" LoRA: one peft folder (adapter_config.json + adapter_model.safetensors), or one per adapter.
    To convert such an export, load it with TVTPipeline.from_pretrained and save_pretrained it again."""
    from peft import LoraConfig
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    subs = [folder] if (folder / "adapter_config.json").is_file() else sorted(p for p in folder.iterdir() if p.is_dir())
    for sub in subs:
        name = "default" if sub == folder else sub.name
        unet.add_adapter(LoraConfig.from_pretrained(sub), adapter_name=name)
        result = set_peft_model_state_dict(unet, load_file(sub / "adapter_model.safetensors"), adapter_name=name)
        if getattr(result, "unexpected_keys", None):
            raise InputError(f"{sub}: adapter keys do not match the UNet, e.g. {result.unexpected_keys[:3]}")


__all__ = ["FORMAT", "CONFIG_NAME", "TRAINABLE_NAME", "LORA_WEIGHT_NAME", "ARCHITECTURES", "save_tvt_export",
           "load_tvt_export", "check_export_files", "read_export_config", "is_tvt_export", "prompt_spec_of", "vae_folder"]
