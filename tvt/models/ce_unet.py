"""CE-UNet: the compute-efficient UNet of TVT (paper Sec. 3.3, Fig. 2b).

SD 2.1's UNet runs at 1/8 of the image; the VAE-D4 latent is 1/4. Instead of running the whole SD UNet
at the larger latent (1.35T FLOPs at 128x128), TVT puts a *copy* of SD's first level in front of it and a
copy of its last level behind it, both at D4 resolution, joined to the original UNet by the first level's
stride-2 downsampler and an upsampler (nearest + conv) on the original last up level, with skip
connections between the copies. The result is simply a diffusers ``UNet2DConditionModel`` with one more
level, so save/load, attention processors and gradient checkpointing work unchanged:

    SD 2.1-base:  block_out_channels (320, 640, 1280, 1280)        latent (B, 4, 64, 64)
    CE-UNet:      block_out_channels (320, 320, 640, 1280, 1280)   latent (B, 4, 128, 128) -> (B, 4, 128, 128)
                  down: CrossAttnDown x4, Down   up: Up, CrossAttnUp x4   head dims (5, 5, 10, 20, 20)

The replicated levels keep SD's cross-attention: without it the CE-UNet would cost 0.565T, not the
paper's 0.73T (Sec. 3.3, at a 512x512 image; tvt.flops counts it).

Weights: SD down_blocks.i -> down_blocks.i+1, up_blocks.i -> up_blocks.i (i < 4);
conv_in, time embedding, mid block, conv_norm_out, conv_out unchanged; down_blocks.0 is a copy of SD
down_blocks.0 and up_blocks.4 a copy of SD up_blocks.3; only up_blocks.3.upsamplers.0 is new.
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from .loading import require_pretrained

# Trained in full (Sec. 3.3: "only the replicated layers undergo full parameter training"); the official
# TVT.set_train also trains conv_in/conv_out. Everything else is LoRA-tuned.
FULLY_TRAINED_PREFIXES = ("conv_in", "conv_out", "down_blocks.0", "up_blocks.3.upsamplers.0", "up_blocks.4")

# Config entries given per level: the new first level repeats SD's first level.
_PER_LEVEL_KEYS = ("attention_head_dim", "num_attention_heads", "cross_attention_dim", "only_cross_attention",
                   "transformer_layers_per_block", "layers_per_block")


def ce_unet_config(sd_unet_config: dict) -> dict:
    """The CE-UNet config derived from any SD-2.1-shaped (4-level) UNet config, full size or tiny."""
    cfg = {k: v for k, v in dict(sd_unet_config).items() if not k.startswith("_")}
    if len(cfg["block_out_channels"]) != 4:
        raise ValueError(f"expected a 4-level SD UNet config, got block_out_channels={cfg['block_out_channels']}")
    if cfg["down_block_types"][-1] != "DownBlock2D" or cfg["up_block_types"][0] != "UpBlock2D":
        raise ValueError("expected SD 2.1's block layout (CrossAttnDown x3 + Down, Up + CrossAttnUp x3), got "
                         f"{cfg['down_block_types']} / {cfg['up_block_types']}")
    cfg["block_out_channels"] = (cfg["block_out_channels"][0], *cfg["block_out_channels"])
    cfg["down_block_types"] = (cfg["down_block_types"][0], *cfg["down_block_types"])  # replicated first level
    cfg["up_block_types"] = (*cfg["up_block_types"], cfg["up_block_types"][-1])  # replicated last level
    for key in _PER_LEVEL_KEYS:
        if isinstance(cfg.get(key), (list, tuple)):
            cfg[key] = (cfg[key][0], *cfg[key])
    if isinstance(cfg.get("sample_size"), int):
        cfg["sample_size"] *= 2  # D4 latent: twice SD's latent side
    return cfg


# ---------------------------------------------------------------------------------------------
# SD -> CE-UNet weight mapping
# ---------------------------------------------------------------------------------------------
def sd_to_ce_unet_key(sd_key: str) -> list[str]:
    """CE-UNet names that receive the SD tensor ``sd_key``: one, or two for the replicated levels."""
    parts = sd_key.split(".")
    if parts[0] == "down_blocks":
        i = int(parts[1])
        shifted = ".".join(["down_blocks", str(i + 1), *parts[2:]])
        return [sd_key, shifted] if i == 0 else [shifted]  # level 0: the copy in front + the original
    if parts[0] == "up_blocks" and int(parts[1]) == 3:
        return [sd_key, ".".join(["up_blocks", "4", *parts[2:]])]  # the original + the copy behind
    return [sd_key]


def sd_to_ce_unet_key_map(sd_keys) -> dict[str, list[str]]:
    """{SD name: [CE-UNet names]} for an iterable of SD names, a state dict or an SD UNet."""
    if isinstance(sd_keys, torch.nn.Module):
        sd_keys = sd_keys.state_dict()
    return {k: sd_to_ce_unet_key(k) for k in sd_keys}


def _fit(value: torch.Tensor, shape: torch.Size, n_skip: int, sd_key: str) -> torch.Tensor:
    """Cut an SD tensor to a CE-UNet shape along input channels, keeping [hidden[:n_hidden], skip].

    Only up_blocks.4.resnets.0 (norm1, conv1, conv_shortcut) needs this: it sees concat(hidden, skip) with
    320 + 320 channels where SD's up_blocks.3.resnets.0 saw 640 + 320 (full size). The official release
    ships this 5-level UNet ready-built (ckp/TVTUNet) with no code for its initialisation, and
    model_TVT.pkl overwrites up_blocks.4 entirely, so the choice only matters when training from SD. We
    keep SD's kernels for all skip channels (the same features as in SD) and for the first n_hidden
    hidden channels (a plain slice, not renormalised): every tensor starts from SD's, nothing is random.
    """
    if value.shape == shape:
        return value
    dim = 1 if value.ndim > 1 else 0
    n_in_sd, n_in_ce = value.shape[dim], shape[dim]
    n_hidden = n_in_ce - n_skip
    if n_hidden <= 0 or value.shape[:dim] != shape[:dim] or value.shape[dim + 1:] != shape[dim + 1:]:
        raise ValueError(f"cannot fit SD parameter {sd_key} {tuple(value.shape)} into {tuple(shape)}")
    idx = torch.cat([torch.arange(n_hidden), torch.arange(n_in_sd - n_skip, n_in_sd)]).to(value.device)
    return value.index_select(dim, idx)


def _check_plain_sd_unet(sd_unet: torch.nn.Module) -> None:
    if getattr(sd_unet, "peft_config", None):
        raise ValueError("build_ce_unet_from_sd needs a plain SD UNet: this one has LoRA adapters (merge or drop them first)")
    if not isinstance(sd_unet, UNet2DConditionModel):
        raise TypeError(f"expected a diffusers UNet2DConditionModel, got {type(sd_unet).__name__}")


def build_ce_unet_from_sd(sd_unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """A CE-UNet carrying every SD weight; only up_blocks.3.upsamplers.0 is randomly initialised.

    Works on the meta device too (no weights are touched then). Shapes: (B, 4, 2h, 2w) in and out where
    the SD UNet took (B, 4, h, w).
    """
    _check_plain_sd_unet(sd_unet)
    p = next(sd_unet.parameters())
    with torch.device(p.device):  # meta in, meta out: full-size checks need no memory
        ce = UNet2DConditionModel(**ce_unet_config(sd_unet.config))
    if p.dtype != torch.float32:
        ce = ce.to(dtype=p.dtype)
    target = ce.state_dict()
    n_skip = sd_unet.config.block_out_channels[0]  # channels of the skip from the replicated first level
    with torch.no_grad():
        for sd_key, value in sd_unet.state_dict().items():
            for key in sd_to_ce_unet_key(sd_key):
                if key not in target:
                    raise KeyError(f"CE-UNet has no parameter {key} for SD parameter {sd_key}")
                target[key].copy_(_fit(value, target[key].shape, n_skip, sd_key))
    return ce


def is_fully_trained(name: str) -> bool:
    """True for parameter/module names under FULLY_TRAINED_PREFIXES (LoRA wrapper names included)."""
    name = name.replace(".base_layer", "")
    return any(name == p or name.startswith(p + ".") for p in FULLY_TRAINED_PREFIXES)


# ---------------------------------------------------------------------------------------------
# Loading (save with ce_unet.save_pretrained(folder): it is a plain UNet2DConditionModel)
# ---------------------------------------------------------------------------------------------
def load_sd_unet(sd_path_or_hub_id: str | Path, subfolder: str | None = "unet", **kwargs) -> UNet2DConditionModel:
    """SD 2.1-base's UNet from a diffusers folder (``<sd>/unet``) or hub id; clear error when absent."""
    return require_pretrained(UNet2DConditionModel, sd_path_or_hub_id, what="SD 2.1 UNet", subfolder=subfolder, **kwargs)


def load_ce_unet(path: str | Path, subfolder: str | None = None, **kwargs) -> UNet2DConditionModel:
    """A CE-UNet folder written by ``save_pretrained`` (ours, or the official ``ckp/TVTUNet`` with subfolder="unet")."""
    unet = require_pretrained(UNet2DConditionModel, path, what="CE-UNet", subfolder=subfolder, **kwargs)
    if len(unet.config.block_out_channels) != 5:
        raise ValueError(f"{path}: not a CE-UNet (block_out_channels={unet.config.block_out_channels}, expected 5 levels)")
    return unet
