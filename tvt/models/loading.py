"""Loading pretrained parts: one place that turns "weights are missing" or "damaged" into a clear message instead of a
traceback, SD 2.1-base's text parts, hub snapshots of exports, and what every loader returns (``TVTComponents``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import DamagedWeightsError, MissingWeightsError
from ..hub import hub_kwargs
from ..prompts import PromptSpec
from .sd21 import SD21_BASE

__all__ = ["SD21_BASE", "TVTComponents", "require_pretrained", "looks_local", "check_safetensors",
           "load_text_parts", "download_if_present"]


@dataclass
class TVTComponents:
    """A loaded model, ready for TVTPipeline: the UNet's LoRA is merged; ``prompt`` is how it is meant to be prompted."""

    vae: nn.Module
    unet: nn.Module
    text_encoder: nn.Module
    tokenizer: Any
    scheduler: Any
    architecture: str
    timestep: int
    base_model: str | None
    prompt: PromptSpec
    config: dict = field(default_factory=dict)  # what the source recorded (an export's tvt_config.json)


def looks_local(path_or_hub_id: str | Path) -> bool:
    """A path rather than a hub id ("org/name"): it exists, starts with . / ~, or has not exactly one "/"."""
    name = str(path_or_hub_id)
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") != 1


def require_pretrained(cls, path_or_hub_id, what: str, subfolder: str | None = None, **kwargs):
    """``cls.from_pretrained`` with an error that names the weights and where to put them; offline, hub ids
    resolve from the local cache only, so a missing model is reported at once (tvt.hub).

    Never falls back to random weights.
    """
    path_or_hub_id = str(path_or_hub_id)
    local = Path(path_or_hub_id).expanduser()
    if looks_local(path_or_hub_id):
        if not local.exists():
            hint = "; the toy runs' tiny SD folder is made by `python scripts/toy.py`" if local.name == "tiny_sd" else ""
            raise MissingWeightsError(f"{what}: no folder at {local} (expected a diffusers model folder){hint}")
        folder = local / subfolder if subfolder else local
        if not folder.is_dir():
            raise MissingWeightsError(f"{what}: folder {folder} does not exist (expected a diffusers model folder)")
    try:
        return cls.from_pretrained(path_or_hub_id, subfolder=subfolder, **{**hub_kwargs(), **kwargs})
    except (OSError, ValueError, EnvironmentError) as err:
        if looks_local(path_or_hub_id):  # the folder is there: a damaged file in it is not "not found"
            for weights in sorted((local / subfolder if subfolder else local).rglob("*.safetensors")):
                check_safetensors(weights)
        where = f"{path_or_hub_id}/{subfolder}" if subfolder else path_or_hub_id
        raise MissingWeightsError(
            f"{what} weights not found at '{where}'. Download them (e.g. `huggingface-cli download "
            f"{SD21_BASE if 'SD' in what else path_or_hub_id}`) on a machine with internet and pass the local "
            f"folder instead. Original error: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None


def check_safetensors(path: str | Path) -> None:
    """DamagedWeightsError naming ``path`` when it is not a whole safetensors file (a truncated copy or download):
    its header must describe exactly the bytes that follow. Reads the header alone."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except Exception as err:  # noqa: BLE001 - SafetensorError and OSError: the file is unreadable either way
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DamagedWeightsError(f"weights file {path} is damaged ({reason}): copy or download it again") from None


def load_text_parts(base_model: str | Path):
    """Text encoder, tokenizer and scheduler of a diffusers folder / hub id (SD 2.1-base); clear error if absent."""
    from diffusers import DDPMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    what = "SD 2.1-base"
    te = require_pretrained(CLIPTextModel, base_model, what=f"{what} text encoder", subfolder="text_encoder")
    tok = require_pretrained(CLIPTokenizer, base_model, what=f"{what} tokenizer", subfolder="tokenizer")
    sched = require_pretrained(DDPMScheduler, base_model, what=f"{what} scheduler", subfolder="scheduler")
    return te, tok, sched


def download_if_present(repo_id: str, filename: str) -> Path | None:
    """The local snapshot of hub repo ``repo_id`` when it holds ``filename``; None when it does not or the hub
    cannot be reached (the caller then tries its other interpretations of the name)."""
    try:
        from huggingface_hub import hf_hub_download, snapshot_download

        hf_hub_download(repo_id, filename, **hub_kwargs())
        return Path(snapshot_download(repo_id, **hub_kwargs()))
    except Exception:  # offline, no such repo, or no such file: not a failure here
        return None
