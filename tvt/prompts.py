"""Prompts for the generator: a pluggable extractor turns images into text, then CLIP encodes a batch.

Official TVT/OSEDiff prompt: "{tags}, {positive prompt}" with tags from the HR image in training and
from the LR image at inference. The offline default is a fixed (possibly empty) prompt.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class PromptExtractor(ABC):
    """images (B, 3, H, W) in [0, 1] -> B prompt strings."""

    @abstractmethod
    def __call__(self, images: torch.Tensor) -> list[str]: ...


class FixedPromptExtractor(PromptExtractor):
    def __init__(self, prompt: str = ""):
        self.prompt = prompt

    def __call__(self, images: torch.Tensor) -> list[str]:
        return [self.prompt] * images.shape[0]


def join_prompt(tags: str, positive: str = "") -> str:
    """"{tags}, {positive}" as the official code writes it; either part may be empty."""
    return ", ".join(p for p in (tags.strip(), positive.strip()) if p)


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    """Tokenise and encode a whole batch at once -> (B, 77, D) CLIP hidden states."""
    ids = tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(text_encoder.device)
    return text_encoder(ids)[0]


class RAMPromptExtractor(PromptExtractor):
    """DAPE tags (RAM Swin-L with the DAPE degradation-aware fine-tune, as OSEDiff/TVT use): "tag1, tag2, ...".

    Needs the ``ram`` package (github.com/xinyu1205/recognize-anything) and two weight files:
    ``ram_swin_large_14m.pth`` (RAM) and ``DAPE.pth`` (SeeSR's DAPE).
    """

    def __init__(self, ram_weights: str | None, dape_weights: str | None = None, device: str = "cpu"):
        from pathlib import Path

        from .models.loading import MissingWeightsError

        for what, path in (("RAM Swin-L weights 'ram_swin_large_14m.pth'", ram_weights),
                           ("DAPE weights 'DAPE.pth'", dape_weights)):
            if path is not None and not Path(path).is_file() or (path is None and "RAM" in what):
                raise MissingWeightsError(f"prompt.extractor=ram needs the {what}; got '{path}'. Download them "
                                          "(SeeSR/OSEDiff releases) and set prompt.ram_weights / prompt.dape_weights.")
        try:
            from ram.models.ram_lora import ram
        except ImportError:
            raise ImportError("prompt.extractor=ram needs the 'ram' package: "
                              "pip install git+https://github.com/xinyu1205/recognize-anything") from None
        kwargs = {"pretrained_condition": dape_weights} if dape_weights else {}
        self.model = ram(pretrained=ram_weights, image_size=384, vit="swin_l", **kwargs).eval().to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> list[str]:
        import torch.nn.functional as F
        from ram import inference_ram

        x = F.interpolate(images.to(self.device).float(), size=(384, 384), mode="bicubic", align_corners=False)
        mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
        tags = inference_ram((x.clamp(0, 1) - mean) / std, self.model)[0]  # one "a | b | c" string per image
        return [t.replace(" |", ",") for t in tags]


def build_prompt_extractor(kind: str = "fixed", text: str = "", ram_weights: str | None = None,
                           dape_weights: str | None = None, device: str = "cpu") -> PromptExtractor:
    """``fixed``: the same tags for every image (empty by default, the offline default); ``ram``: DAPE tags."""
    if kind == "fixed":
        return FixedPromptExtractor(text)
    if kind == "ram":
        return RAMPromptExtractor(ram_weights, dape_weights, device)
    raise ValueError(f"prompt extractor must be 'fixed' or 'ram', got '{kind}'")
