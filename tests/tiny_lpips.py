"""A tiny stand-in for LPIPS's VGG16 backbone, whose ImageNet weights the tests never have.

The lpips package builds its backbone from ``lpips.pretrained_networks.vgg16`` and its calibrated linear heads from
its own bundled file; only the backbone is swapped, for a network with VGG16's five feature widths (64, 128, 256,
512, 512) and strides (1, 2, 4, 8, 16) made of 1x1 convolutions, about 40x cheaper at 128 px. The backbone's
weight file in the torch hub cache becomes a placeholder, so ``lpips_backbone: pretrained`` runs as configured.
"""
from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import pytest
import torch
from torch import nn

VGG_FEATURES = namedtuple("VggOutputs", ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"])


class TinyVGG16(nn.Module):
    def __init__(self, requires_grad: bool = False, pretrained: bool = True):
        super().__init__()
        torch.manual_seed(0)
        widths, self.N_slices = (3, 64, 128, 256, 512, 512), 5
        for k in range(5):
            pool = [nn.MaxPool2d(2)] if k else []
            setattr(self, f"slice{k + 1}", nn.Sequential(*pool, nn.Conv2d(widths[k], widths[k + 1], 1), nn.ReLU()))
        self.requires_grad_(requires_grad)

    def forward(self, x: torch.Tensor):
        feats = []
        for k in range(5):
            x = getattr(self, f"slice{k + 1}")(x)
            feats.append(x)
        return VGG_FEATURES(*feats)


def install_tiny_lpips_backbone(monkeypatch: pytest.MonkeyPatch, torch_home: Path) -> None:
    import lpips.pretrained_networks

    from tvt.losses.perceptual import backbone_weight_path

    monkeypatch.setattr(lpips.pretrained_networks, "vgg16", TinyVGG16)
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    backbone_weight_path("vgg").parent.mkdir(parents=True, exist_ok=True)
    backbone_weight_path("vgg").write_bytes(b"stand-in")
