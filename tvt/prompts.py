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
