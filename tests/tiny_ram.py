"""A tiny stand-in for OSEDiff's ``ram`` package (RAM Swin-L / DAPE tagger), whose weights the tests never have.

It has the interface tvt.prompts.RAMPromptExtractor uses, ``ram.models.ram_lora.ram(pretrained=..., image_size=...,
vit=..., [pretrained_condition=...])`` and ``ram.inference_ram(images, model) -> one tag string per image``, so the
extractor's own code (weights check, resize, normalisation, dtype) runs unchanged; its network is one 1x1 conv.
"""
from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn


class TinyRAM(nn.Module):
    """Records the dtype of every batch it tags (``seen``) and of its weights."""

    def __init__(self, pretrained: str, image_size: int, vit: str, pretrained_condition: str | None = None):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Conv2d(3, 2, 1)
        self.files = (pretrained, pretrained_condition)
        self.seen: list[tuple[torch.dtype, torch.dtype, tuple]] = []

    def generate_tag(self, images: torch.Tensor) -> tuple[list[str], list[str]]:
        self.seen.append((images.dtype, self.net.weight.dtype, tuple(images.shape)))
        score = self.net(images).float().mean(dim=(2, 3))  # (B, 2)
        tags = [" | ".join(name for name, s in zip(("sky", "stone"), row) if s > 0) or "thing" for row in score]
        return tags, tags


def install_tiny_ram(monkeypatch: pytest.MonkeyPatch) -> list[TinyRAM]:
    """Make ``import ram`` give the stand-in; returns the list every TinyRAM built is appended to."""
    built: list[TinyRAM] = []

    def ram(**kwargs) -> TinyRAM:
        built.append(TinyRAM(**kwargs))
        return built[-1]

    def inference_ram(images, model):  # OSEDiff's ram/inference.py: the tags of every image
        with torch.no_grad():
            return model.generate_tag(images)[0]

    package, models, ram_lora = (types.ModuleType(n) for n in ("ram", "ram.models", "ram.models.ram_lora"))
    package.inference_ram, package.models, models.ram_lora, ram_lora.ram = inference_ram, models, ram_lora, ram
    for name, module in (("ram", package), ("ram.models", models), ("ram.models.ram_lora", ram_lora)):
        monkeypatch.setitem(sys.modules, name, module)
    return built
