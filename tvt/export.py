"""The exported-model folder: what ISR training writes and what the inference pipeline loads.

    export_dir/
      tvt_config.json                  format, architecture, base model, VAE subfolder, timestep, LoRA, prompt
      vae_d4/  (TVT) or vae/ (OSEDiff) diffusers save_pretrained; a VAE-encoder LoRA is merged in before saving
      ce_unet_lora/                    peft adapter of the (CE-)UNet: adapter_config.json + adapter_model.safetensors
      ce_unet_trainable.safetensors    layers trained in full (the replicated first/last levels, Sec. 3.3)

Only what training changed is stored; everything else of the UNet, the text encoder, tokenizer and
scheduler come from ``base_model`` (SD 2.1-base), so an export is ~100 MB instead of ~3.5 GB.
Assumption (checked by the round-trip test): weights outside the LoRA and the fully trained layers
are the base model's frozen weights.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .prompts import PromptSpec

FORMAT = "tvt-export-v1"
CONFIG_NAME = "tvt_config.json"
LORA_DIR = "ce_unet_lora"
TRAINABLE_NAME = "ce_unet_trainable.safetensors"
ARCHITECTURES = ("tvt", "osediff", "s4")  # tvt.train.isr.ARCHITECTURES


# ---------------------------------------------------------------------------------------------
# LoRA / fully-trained-layer primitives live in tvt.models.lora (helper-1); here only what the folder needs.
# ---------------------------------------------------------------------------------------------
def _lora_configs_of(model: nn.Module) -> dict:
    """{adapter name: LoraConfig} attached to ``model`` (diffusers ``add_adapter`` or a peft model); {} if none."""
    return dict(getattr(model, "peft_config", None) or {})


def _has_unmerged_lora(model: nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


def merge_all_lora(model: nn.Module) -> nn.Module:
    """Activate every attached adapter, then fold them into the base weights (tvt.models.lora.merge_lora)."""
    from .models.lora import merge_lora

    names = list(_lora_configs_of(model))
    if len(names) > 1 and hasattr(model, "set_adapters"):
        model.set_adapters(names)  # diffusers activates only the last added adapter
    return merge_lora(model)


# ---------------------------------------------------------------------------------------------
# Save
# ---------------------------------------------------------------------------------------------
def save_tvt_export(
    export_dir: str | Path,
    *,
    ce_unet: nn.Module,
    vae: nn.Module,
    base_model: str | Path,
    lora_config: Any = None,
    prompt: Any = None,
    architecture: str = "tvt",
    timestep: int = 1,
    extra: dict | None = None,
    full_unet: bool = False,
    text_encoder: nn.Module | None = None,
    tokenizer: Any = None,
    scheduler: Any = None,
) -> Path:
    """Write an export folder atomically (temp folder beside ``export_dir``, then rename over it).

    ce_unet: the CE-UNet (TVT) or SD UNet (OSEDiff), with its LoRA attached (diffusers ``add_adapter``
        or a peft model) or already merged/absent. Not modified.
    vae: VAE-D4 (TVT) or VAE-D8 (OSEDiff); an attached encoder LoRA is merged into a copy before saving.
    prompt: the PromptSpec the model is meant to be run with (extractor, template, positive/negative text);
        inference builds the same extractor by default.
    lora_config: overrides the LoRA description found on ``ce_unet`` (a peft LoraConfig or dict); only
        needed when the LoRA cannot be read from the model.
    extra: any JSON-serialisable fields stored under "extra" (training step, config, metrics).
    full_unet: store the whole UNet as ``unet/`` (diffusers folder, LoRA merged) instead of LoRA + trained
        layers; needed when the UNet is not "base + LoRA + trained layers", e.g. after the LoRA was merged.
    text_encoder, tokenizer, scheduler: stored as subfolders when given (a self-contained export, used for
        tiny test models); otherwise they come from ``base_model`` at load time.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got '{architecture}'")
    export_dir = Path(export_dir)
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{export_dir.name}.", suffix=".tmp", dir=export_dir.parent))
    try:
        vae_sub = "vae" if architecture == "osediff" else "vae_d4"
        encoder_lora = _save_vae(vae, tmp / vae_sub)
        if full_unet:
            _save_full(ce_unet, tmp / "unet")
            lora = None
        else:
            lora = _save_unet(ce_unet, tmp, architecture, lora_config)
        for name, part in (("text_encoder", text_encoder), ("tokenizer", tokenizer), ("scheduler", scheduler)):
            if part is not None:
                part.save_pretrained(tmp / name)
        unet = ce_unet.base_model.model if hasattr(ce_unet, "base_model") and hasattr(ce_unet.base_model, "model") else ce_unet
        cfg = {
            "format": FORMAT,
            "architecture": architecture,
            "base_model": str(base_model),
            "vae": vae_sub,
            "vae_class": type(vae).__name__,
            "timestep": int(timestep),
            "unet": "unet" if full_unet else None,
            "lora": lora,
            "encoder_lora": encoder_lora,
            "prompt": (prompt or PromptSpec()).to_dict(),
            "unet_config": _jsonable(dict(unet.config)) if hasattr(unet, "config") else None,
            "extra": _jsonable(extra or {}),
        }
        (tmp / CONFIG_NAME).write_text(json.dumps(cfg, indent=2))
        _replace_dir(tmp, export_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return export_dir


def _save_full(model: nn.Module, folder: Path) -> bool:
    """save_pretrained, with any LoRA merged into a copy first (the caller's model is left untouched)."""
    if hasattr(model, "base_model") and hasattr(model.base_model, "model"):  # a peft wrapper
        model = model.base_model.model
    has_lora = _has_unmerged_lora(model)
    if has_lora:
        import copy

        model = merge_all_lora(copy.deepcopy(model))
    model.save_pretrained(folder)
    return has_lora


_save_vae = _save_full


def _save_unet(unet: nn.Module, folder: Path, architecture: str, lora_config: Any) -> dict | None:
    """LoRA adapter(s) as peft folders + the fully trained layers; returns the "lora" entry of tvt_config.json.

    One adapter -> ce_unet_lora/ (a standard peft adapter folder); several (the official code uses three:
    encoder/decoder/others) -> ce_unet_lora/<name>/ each.
    """
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    cfgs = _lora_configs_of(unet) if _has_unmerged_lora(unet) else {}
    for name, cfg in cfgs.items():
        sd = get_peft_model_state_dict(unet, adapter_name=name)
        sd = {k.removeprefix("base_model.model."): v.detach().cpu().contiguous() for k, v in sd.items()}
        sub = folder / LORA_DIR / (name if len(cfgs) > 1 else "")
        sub.mkdir(parents=True)
        cfg.save_pretrained(sub)
        save_file(sd, sub / "adapter_model.safetensors")
    if lora_config is not None:
        cfgs = {"default": LoraConfig(**lora_config) if isinstance(lora_config, dict) else lora_config}
    lora = None
    if cfgs:
        first = next(iter(cfgs.values()))
        targets = sorted({t for c in cfgs.values() for t in (c.target_modules if isinstance(c.target_modules, (set, list, tuple)) else [c.target_modules])})
        lora = {"rank": int(first.r), "alpha": float(first.lora_alpha), "target_modules": targets,
                "adapters": sorted(cfgs), "merged": not (folder / LORA_DIR).exists()}
    if architecture == "tvt":  # the CE-UNet's fully trained layers (Sec. 3.3); OSEDiff has none
        from .models.lora import fully_trained_state_dict

        model = unet.base_model.model if hasattr(unet, "base_model") and hasattr(unet.base_model, "model") else unet
        full = fully_trained_state_dict(model)
        if not full:
            raise ValueError("no fully trained CE-UNet layers found: is ce_unet a CE-UNet? (architecture='tvt')")
        save_file(full, folder / TRAINABLE_NAME)
    return lora


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename ``src`` onto ``dst``; an existing ``dst`` is moved aside first and removed after."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
@dataclass
class TVTComponents:
    """Everything the pipeline needs; the UNet's LoRA is already merged."""

    vae: nn.Module
    unet: nn.Module
    text_encoder: nn.Module
    tokenizer: Any
    scheduler: Any
    config: dict = field(default_factory=dict)

    @property
    def prompt(self) -> PromptSpec:
        return prompt_spec_of(self.config)


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
        raise FileNotFoundError(f"{export_dir} is not a TVT export folder: {CONFIG_NAME} missing")
    cfg = json.loads(path.read_text())
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown format '{cfg.get('format')}', expected '{FORMAT}'")
    return cfg


def is_tvt_export(path: str | Path) -> bool:
    return (Path(path) / CONFIG_NAME).is_file()


def load_text_parts(base_model: str | Path):
    """Text encoder, tokenizer and scheduler of a diffusers folder / hub id (SD 2.1-base); clear error if absent."""
    from diffusers import DDPMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    from .models.loading import require_pretrained

    what = "SD 2.1-base"
    te = require_pretrained(CLIPTextModel, base_model, what=f"{what} text encoder", subfolder="text_encoder")
    tok = require_pretrained(CLIPTokenizer, base_model, what=f"{what} tokenizer", subfolder="tokenizer")
    sched = require_pretrained(DDPMScheduler, base_model, what=f"{what} scheduler", subfolder="scheduler")
    return te, tok, sched


def load_base_unet(base_model: str | Path) -> nn.Module:
    """SD 2.1-base's UNet (clear MissingWeightsError when absent)."""
    from .models.ce_unet import load_sd_unet

    return load_sd_unet(base_model)


def build_ce_unet(sd_unet: nn.Module) -> nn.Module:
    """The CE-UNet built from the SD UNet (Sec. 3.3, tvt.models.ce_unet)."""
    from .models.ce_unet import build_ce_unet_from_sd

    return build_ce_unet_from_sd(sd_unet)


def load_tvt_export(
    export_dir: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    base_model: str | Path | None = None,
) -> TVTComponents:
    """Rebuild the models of an export folder; ``base_model`` overrides the stored SD 2.1 path/hub id."""
    from peft import LoraConfig
    from peft.utils import set_peft_model_state_dict

    from .models.loading import require_pretrained

    export_dir = Path(export_dir)
    cfg = read_export_config(export_dir)
    arch = cfg["architecture"]
    base = base_model or cfg["base_model"]
    if cfg.get("unet") and all((export_dir / n).is_dir() for n in ("text_encoder", "tokenizer", "scheduler")):
        base = export_dir  # self-contained export: no base model needed
    te, tok, sched = load_text_parts(export_dir if (export_dir / "text_encoder").is_dir() else base)
    if cfg.get("unet"):
        from diffusers import UNet2DConditionModel

        sd_unet = require_pretrained(UNet2DConditionModel, export_dir / cfg["unet"], what="exported UNet")
    else:
        sd_unet = load_base_unet(base)

    if arch in ("tvt", "s4"):
        from .models.vae import AutoencoderKLD4

        vae = require_pretrained(AutoencoderKLD4, export_dir / cfg["vae"], what="exported VAE-D4")
        unet = build_ce_unet(sd_unet) if arch == "tvt" and not cfg.get("unet") else sd_unet
    else:
        from diffusers import AutoencoderKL

        vae = require_pretrained(AutoencoderKL, export_dir / cfg["vae"], what="exported VAE-D8")
        unet = sd_unet
    if cfg.get("unet_config"):
        _check_unet_config(unet, cfg["unet_config"], export_dir)

    trainable = export_dir / TRAINABLE_NAME
    if trainable.is_file():
        from .models.lora import load_fully_trained

        load_fully_trained(unet, trainable)

    lora_dir = export_dir / LORA_DIR
    if lora_dir.is_dir():
        subs = [lora_dir] if (lora_dir / "adapter_config.json").is_file() else sorted(p for p in lora_dir.iterdir() if p.is_dir())
        for sub in subs:
            name = "default" if sub == lora_dir else sub.name
            unet.add_adapter(LoraConfig.from_pretrained(sub), adapter_name=name)
            result = set_peft_model_state_dict(unet, load_file(sub / "adapter_model.safetensors"), adapter_name=name)
            if getattr(result, "unexpected_keys", None):
                raise ValueError(f"{sub}: adapter keys do not match the UNet, e.g. {result.unexpected_keys[:3]}")
        merge_all_lora(unet)  # merged for speed: inference never needs the adapters separately

    for m in (vae, unet, te):
        m.to(device).eval().requires_grad_(False)
        if dtype != torch.float32:  # loaded in fp32; only cast when asked (diffusers logs on every cast)
            m.to(dtype=dtype)
    return TVTComponents(vae=vae, unet=unet, text_encoder=te, tokenizer=tok, scheduler=sched, config=cfg)


def _check_unet_config(unet: nn.Module, saved: dict, export_dir: Path) -> None:
    keys = ("block_out_channels", "down_block_types", "up_block_types", "in_channels", "cross_attention_dim")
    for k in keys:
        if k in saved and k in unet.config:
            a, b = list(_jsonable(unet.config[k])) if isinstance(unet.config[k], (list, tuple)) else unet.config[k], saved[k]
            if a != b:
                raise ValueError(
                    f"{export_dir}: UNet built from the base model has {k}={a}, the export was trained with {b}; "
                    "is base_model the right SD 2.1-base?"
                )
