"""CE-UNet: the compute-efficient UNet of TVT (paper Sec. 3.3, Fig. 2b).

SD 2.1's UNet runs at 1/8 of the image; the VAE-D4 latent is 1/4. Instead of running the whole SD UNet
at the larger latent (1.35T FLOPs at 128x128), TVT puts a *copy* of SD's first level in front of it and a
copy of its last level behind it, both at D4 resolution, joined to the original UNet by the first level's
stride-2 downsampler and an upsampler (nearest + conv) on the original last-but-one up level, with skip
connections between the copies. The result is simply a diffusers ``UNet2DConditionModel`` with one more
level, so save/load, attention processors and gradient checkpointing work unchanged:

    SD 2.1-base:  block_out_channels (320, 640, 1280, 1280)        latent  (B, 4, 64, 64)
    CE-UNet:      block_out_channels (320, 320, 640, 1280, 1280)   latent  (B, 4, 128, 128) -> (B, 4, 128, 128)

Weights (REFERENCE.md): SD down_blocks.i -> down_blocks.i+1, up_blocks.i -> up_blocks.i (i < 4);
conv_in, time embedding, mid block, conv_norm_out, conv_out unchanged; down_blocks.0 is a copy of SD
down_blocks.0 and up_blocks.4 a copy of SD up_blocks.3; up_blocks.3.upsamplers.0 is new.
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from .loading import require_pretrained

# Trained in full; everything else is LoRA-tuned (official code's TVT.set_train).
FULLY_TRAINED_PREFIXES = ("conv_in", "conv_out", "down_blocks.0", "up_blocks.3.upsamplers.0", "up_blocks.4")

_PER_LEVEL_KEYS = ("attention_head_dim", "num_attention_heads", "cross_attention_dim", "only_cross_attention",
                   "transformer_layers_per_block", "layers_per_block")


def ce_unet_config(sd_config: dict) -> dict:
    """The CE-UNet config derived from an SD-2.1-shaped UNet config (full size or the tiny fixture)."""
    cfg = {k: v for k, v in dict(sd_config).items() if not k.startswith("_")}
    if len(cfg["block_out_channels"]) != 4:
        raise ValueError(f"expected a 4-level SD UNet config, got block_out_channels={cfg['block_out_channels']}")
    cfg["block_out_channels"] = (cfg["block_out_channels"][0], *cfg["block_out_channels"])
    cfg["down_block_types"] = (cfg["down_block_types"][0], *cfg["down_block_types"])  # replicated first level
    cfg["up_block_types"] = (*cfg["up_block_types"], cfg["up_block_types"][-1])  # replicated last level
    for key in _PER_LEVEL_KEYS:  # per-level settings: the new first level copies SD's first level
        if isinstance(cfg.get(key), (list, tuple)):
            cfg[key] = (cfg[key][0], *cfg[key])
    if isinstance(cfg.get("sample_size"), int):
        cfg["sample_size"] = cfg["sample_size"] * 2
    return cfg


def sd_to_ce_unet_key(sd_key: str) -> list[str]:
    """CE-UNet parameter names that receive the SD parameter ``sd_key`` (one, or two for the replicated levels)."""
    parts = sd_key.split(".")
    if parts[0] == "down_blocks":
        i = int(parts[1])
        targets = [".".join(["down_blocks", str(i + 1), *parts[2:]])]
        if i == 0:
            targets.append(sd_key)  # the copy in front
        return targets
    if parts[0] == "up_blocks" and int(parts[1]) == 3:
        return [sd_key, ".".join(["up_blocks", "4", *parts[2:]])]  # original + the copy behind
    return [sd_key]


def build_ce_unet_from_sd(sd_unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """A CE-UNet carrying every SD weight; only up_blocks.3.upsamplers.0 is randomly initialised.

    up_blocks.4.resnets.0 sees a 320+320-channel concat (previous level + skip) where SD's up_blocks.3.resnets.0
    saw 640+320; its copy keeps SD's kernels for the first 320 hidden channels and all skip channels.
    """
    ce = UNet2DConditionModel(**ce_unet_config(sd_unet.config)).to(device=sd_unet.device, dtype=sd_unet.dtype)
    target = ce.state_dict()
    with torch.no_grad():
        for sd_key, value in sd_unet.state_dict().items():
            for key in sd_to_ce_unet_key(sd_key):
                if key not in target:
                    raise KeyError(f"CE-UNet has no parameter {key} for SD parameter {sd_key}")
                target[key].copy_(_fit(value, target[key].shape, sd_unet, sd_key))
    return ce


def _fit(value: torch.Tensor, shape: torch.Size, sd_unet, sd_key: str) -> torch.Tensor:
    """SD tensor cut to the CE-UNet shape along input channels: [hidden[:n_hidden], skip] (see above)."""
    if value.shape == shape:
        return value
    n_in_sd, n_in_ce = value.shape[1 if value.ndim > 1 else 0], shape[1 if len(shape) > 1 else 0]
    n_skip = sd_unet.config.block_out_channels[0]  # channels of the skip from the first level
    n_hidden = n_in_ce - n_skip
    idx = torch.cat([torch.arange(n_hidden), torch.arange(n_in_sd - n_skip, n_in_sd)]).to(value.device)
    out = value.index_select(1 if value.ndim > 1 else 0, idx)
    if out.shape != shape:
        raise ValueError(f"cannot fit SD parameter {sd_key} {tuple(value.shape)} into {tuple(shape)}")
    return out


def ce_unet_key_report(sd_unet: UNet2DConditionModel, ce_unet: UNet2DConditionModel) -> dict[str, list[str]]:
    """Which CE-UNet parameters come from SD (``copied``/``sliced``), which are ``new``, and ``unused_sd`` (must be [])."""
    sd_sd, ce_sd = sd_unet.state_dict(), ce_unet.state_dict()
    copied, sliced, unused = [], [], []
    for sd_key, value in sd_sd.items():
        targets = [k for k in sd_to_ce_unet_key(sd_key) if k in ce_sd]
        if not targets:
            unused.append(sd_key)
        for k in targets:
            (copied if ce_sd[k].shape == value.shape else sliced).append(k)
    new = sorted(set(ce_sd) - set(copied) - set(sliced))
    return {"copied": copied, "sliced": sliced, "new": new, "unused_sd": unused}


def is_fully_trained(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in FULLY_TRAINED_PREFIXES)


def load_sd_unet(path_or_hub_id: str | Path, subfolder: str | None = "unet", **kwargs) -> UNet2DConditionModel:
    """SD 2.1-base's UNet from a diffusers folder or hub id."""
    return require_pretrained(UNet2DConditionModel, path_or_hub_id, what="SD 2.1 UNet", subfolder=subfolder, **kwargs)


def load_ce_unet(path: str | Path, subfolder: str | None = None, **kwargs) -> UNet2DConditionModel:
    """A CE-UNet folder written by ``save_pretrained``."""
    return require_pretrained(UNet2DConditionModel, path, what="CE-UNet", subfolder=subfolder, **kwargs)
