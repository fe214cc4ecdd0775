"""LPIPS (VGG) as a frozen loss module, with a clear error when its backbone weights are absent.

The lpips package ships its calibrated linear layers, but the VGG16 backbone comes from torchvision's
download cache. Offline, we never download: either the file is already there, or the caller opts in to
a random backbone explicitly (``backbone="random"``, tiny toy runs and tests only; it is logged).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from ..errors import MissingWeightsError

log = logging.getLogger(__name__)

BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}


def backbone_weight_path(net: str = "vgg") -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[net]


class LPIPSLoss(nn.Module):
    """Mean LPIPS distance; inputs (B, 3, H, W) in [-1, 1]. Frozen; gradients flow to the inputs only."""

    def __init__(self, net: str = "vgg", backbone: str = "pretrained"):
        super().__init__()
        import lpips

        if net not in BACKBONE_FILES:
            raise ValueError(f"LPIPS net must be one of {sorted(BACKBONE_FILES)}, got '{net}'")
        if backbone not in ("pretrained", "random"):
            raise ValueError(f"LPIPS backbone must be 'pretrained' or 'random', got '{backbone}'")
        if backbone == "pretrained" and not backbone_weight_path(net).is_file():
            raise MissingWeightsError(
                f"LPIPS needs the torchvision {net} backbone weights '{BACKBONE_FILES[net]}' in "
                f"{backbone_weight_path(net).parent} (copy them there from a machine with internet, or set "
                f"TORCH_HOME). Tiny toy runs may set lpips_backbone=random instead."
            )
        if backbone == "random":
            log.warning("LPIPS with a RANDOM %s backbone: a toy-run stand-in, not the perceptual metric.", net)
        self.net = lpips.LPIPS(net=net, pnet_rand=backbone == "random", verbose=False).eval()
        self.requires_grad_(False)

    def train(self, mode: bool = True):  # always eval: no dropout in a loss
        return super().train(False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 3:
            raise ValueError(f"LPIPS expects two (B, 3, H, W) images of equal shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
        return self.net(pred.float(), target.float()).mean()
