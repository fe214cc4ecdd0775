"""Prun-UNet: SD's UNet with 25 % of its channels pruned (Table 7, S5).

Paper, Sec. 4.3: "In S5, we reduce the FLOPs of pre-trained UNet by pruning 25% of it's channels (Prun-UNet)",
run with VAE-D4 at the D4 latent (2.00T in Table 7). Nothing says which channels go. We prune structurally and
without data, so the pruned UNet is again a diffusers ``UNet2DConditionModel`` (save/load, LoRA, attention
processors unchanged):

    widths      every level, the time embedding and the feed-forward layers at 3/4 (SD: 320/640/1280/1280 ->
                240/480/960/960); attention heads kept (5/10/20/20), each at 3/4 of its width (64 -> 48)
    GroupNorm   24 groups instead of 32, so every group keeps SD's size (10/20/40 channels)
    weights     SD's, sliced: along every pruned axis of the residual stream, time embedding and feed-forward
                layers, the last of every four GroupNorm-sized channel groups goes (a kept group is one of SD's
                groups, whole); inside attention, the last quarter of each head; the concatenated inputs of the up
                blocks' first convolutions are pruned part by part, as the levels they come from

Data-driven criteria (e.g. Diff-Pruning's Taylor importance) would need SD's training data; the ablation's question
(what pruning the pre-trained UNet costs against CE-UNet at the same FLOPs) does not hinge on the criterion. The
pruned UNet is trained in full (pruning breaks weights that LoRA cannot mend; tvt.models.architectures).
"""
from __future__ import annotations

import re

import torch
from diffusers import UNet2DConditionModel

KEEP_NUM, KEEP_DEN = 3, 4  # 25 % pruned: keep 3 of every 4 channel groups
_CONCAT_INPUT = re.compile(r"^up_blocks\.(\d+)\.resnets\.(\d+)\.(norm1|conv1|conv_shortcut)\.")
_ATTENTION = re.compile(r"^(.*\.attentions\.\d+)\.(transformer_blocks\.|proj_in\.|proj_out\.)")


def pruned_unet_config(sd_unet_config: dict) -> dict:
    """SD's UNet config with every width and the GroupNorm group count at 3/4."""
    cfg = {k: v for k, v in dict(sd_unet_config).items() if not k.startswith("_")}
    groups = cfg["norm_num_groups"]
    if groups % KEEP_DEN or any(c % groups for c in cfg["block_out_channels"]):
        raise ValueError(f"cannot prune 1/{KEEP_DEN} of the groups of {cfg['block_out_channels']} / {groups} groups")
    cfg["block_out_channels"] = tuple(c * KEEP_NUM // KEEP_DEN for c in cfg["block_out_channels"])
    cfg["norm_num_groups"] = groups * KEEP_NUM // KEEP_DEN
    return cfg


def _kept_groups(n: int, groups: int) -> torch.Tensor:
    """Indices of [0, n) outside the last of every KEEP_DEN consecutive groups of n // groups channels."""
    unit = n // groups
    i = torch.arange(n, device="cpu")  # indices are data: never on the meta device
    return i[(i // unit) % KEEP_DEN != KEEP_DEN - 1]


def _kept_per_head(n: int, heads: int) -> torch.Tensor:
    """Indices of [0, n) outside the last quarter of each of ``heads`` heads."""
    head = n // heads
    i = torch.arange(n, device="cpu")  # indices are data: never on the meta device
    return i[((i % head) * KEEP_DEN // head) != KEEP_DEN - 1]


def _up_block_input_parts(config, block: int, resnet: int) -> tuple[int, int]:
    """(hidden, skip) channels concatenated at the input of up_blocks.<block>.resnets.<resnet> (diffusers' layout)."""
    rev = list(reversed(config.block_out_channels))
    out = rev[block]
    prev = rev[block - 1] if block > 0 else rev[0]
    skip_from = rev[min(block + 1, len(rev) - 1)]
    hidden = prev if resnet == 0 else out
    skip = skip_from if resnet == config.layers_per_block else out
    return hidden, skip


def _kept_index(key: str, dim: int, n: int, config, heads: dict[str, int], inner: dict[str, int]) -> torch.Tensor:
    """The SD channels kept along axis ``dim`` (size n) of the SD tensor ``key``."""
    groups = config.norm_num_groups
    m = _CONCAT_INPUT.match(key)
    if m and dim == (0 if m.group(3) == "norm1" else 1):
        parts = _up_block_input_parts(config, int(m.group(1)), int(m.group(2)))
        if sum(parts) != n:
            raise ValueError(f"{key}: expected {parts[0]} + {parts[1]} input channels, got {n}")
        return torch.cat([_kept_groups(parts[0], groups), parts[0] + _kept_groups(parts[1], groups)])
    m = _ATTENTION.match(key)
    if m:
        prefix, kind = m.group(1), m.group(2)
        if kind == "transformer_blocks." and ".ff.net.0.proj." in key and dim == 0:  # GEGLU: (hidden, gate) halves
            half = _kept_groups(n // 2, groups)
            return torch.cat([half, n // 2 + half])
        if (kind == "transformer_blocks." and n == inner[prefix]) or (kind == "proj_in." and dim == 0) or \
                (kind == "proj_out." and dim == 1):
            return _kept_per_head(n, heads[prefix])
    return _kept_groups(n, groups)


def build_pruned_unet_from_sd(sd_unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """The Prun-UNet carrying SD's weights sliced as the module docstring says; works on the meta device."""
    p = next(sd_unet.parameters())
    with torch.device(p.device):
        pruned = UNet2DConditionModel(**pruned_unet_config(sd_unet.config))
    heads, inner = {}, {}
    for name, module in sd_unet.named_modules():
        if name.endswith(".transformer_blocks.0.attn1"):
            prefix = name[: -len(".transformer_blocks.0.attn1")]
            heads[prefix], inner[prefix] = module.heads, module.inner_dim
    target = pruned.state_dict()
    with torch.no_grad():
        for key, value in sd_unet.state_dict().items():
            shape = target[key].shape
            for dim in range(value.ndim):
                if value.shape[dim] != shape[dim]:
                    idx = _kept_index(key, dim, value.shape[dim], sd_unet.config, heads, inner).to(value.device)
                    value = value.index_select(dim, idx)
            if value.shape != shape:
                raise ValueError(f"pruning {key}: {tuple(value.shape)} does not fit {tuple(shape)}")
            target[key].copy_(value)
    return pruned.to(p.dtype)
