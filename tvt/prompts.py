"""Prompts for the generator (Sec. 3.3: "a prompt extractor, which includes the DAPE and CLIP text encoder").

A ``PromptSpec`` says how a model is prompted: which extractor turns an image into tags and the text around
them. Training uses one spec (tags of the HR crop) and every export records the spec its model is meant to be
run with (tags of the LR input), so inference prompts the model the way it was trained to be prompted.

Official TVT (train.py, inference.py; RAM/DAPE from OSEDiff's ``ram`` package, tags joined with ", "):
    training   RAM Swin-L tags of the HR crop (no DAPE)     f"{tags}, {positive}"   positive ""
    inference  RAM + DAPE tags of the upscaled LR          f"{tags}, {positive},"  positive "clean, high-resolution, 8k"
Extractors are pluggable: ``register_extractor(name, factory)`` adds one (tests register a fake).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from .errors import MissingWeightsError

# Official negative prompts: VSD's classifier-free guidance in training (train.sh --negative_prompt), and the
# one test_realsr.sh passes at inference (a one-step model has no CFG there: recorded, not used).
TRAIN_NEGATIVE_PROMPT = ("painting, oil painting, illustration, drawing, art, sketch, oil painting, cartoon, CG Style, "
                         "3D render, unreal engine, blurring, dirty, messy, worst quality, low quality, frames, watermark, "
                         "signature, jpeg artifacts, deformed, lowres, over-smooth")
INFERENCE_POSITIVE_PROMPT = "clean, high-resolution, 8k"
INFERENCE_NEGATIVE_PROMPT = "dotted, noise, blur, lowres, smooth"
RAM_WEIGHTS = "ram_swin_large_14m.pth"
DAPE_WEIGHTS = "DAPE.pth"
# The tagger's input, as the official inference.py's ram_transforms: 384 x 384, ImageNet mean/std
RAM_IMAGE_SIZE = 384
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class PromptSpec:
    """How a model is prompted. Defaults: no tagger, empty tags (runs without any weights)."""

    extractor: str = "fixed"  # fixed | ram (RAM tags; DAPE tags when dape_weights is set) | a registered name
    tags: str = ""  # the fixed extractor's tags
    template: str = "{tags}, {positive}"  # the official f-string of training (inference adds a trailing ",")
    positive: str = ""
    negative: str = ""
    ram_weights: Optional[str] = None  # path to ram_swin_large_14m.pth
    dape_weights: Optional[str] = None  # path to DAPE.pth (SeeSR's degradation-aware RAM fine-tune)

    def text(self, tags: str) -> str:
        return self.template.format(tags=tags, positive=self.positive)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PromptSpec":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown prompt fields {sorted(unknown)}")
        return cls(**d)


def official_inference_prompt(ram_weights: str | None = None, dape_weights: str | None = None) -> PromptSpec:
    """Official test_realsr.sh: RAM + DAPE tags of the upscaled LR, then f"{tags}, {prompt},"."""
    return PromptSpec(extractor="ram", template="{tags}, {positive},", positive=INFERENCE_POSITIVE_PROMPT,
                      negative=INFERENCE_NEGATIVE_PROMPT, ram_weights=ram_weights, dape_weights=dape_weights)


class PromptExtractor(ABC):
    """images (B, 3, H, W) in [0, 1] -> B tag strings."""

    @abstractmethod
    def __call__(self, images: torch.Tensor) -> list[str]: ...

    def set_dtype(self, dtype: torch.dtype) -> "PromptExtractor":
        """Run the tagger's network in ``dtype`` (official training: RAM in fp16); taggers without one ignore it."""
        return self


class FixedPromptExtractor(PromptExtractor):
    def __init__(self, tags: str = ""):
        self.tags = tags

    def __call__(self, images: torch.Tensor) -> list[str]:
        return [self.tags] * images.shape[0]


class RAMPromptExtractor(PromptExtractor):
    """RAM Swin-L tags ("tag1, tag2, ..."), with SeeSR's DAPE fine-tune when ``dape_weights`` is given.

    Needs the ``ram`` package as OSEDiff/SeeSR ship it (``ram.models.ram_lora``) and the weight files.
    Input transform as the official code: resize to 384x384 (bilinear, antialiased) + ImageNet normalisation.
    """

    def __init__(self, ram_weights: str | None, dape_weights: str | None = None, device: str = "cpu"):
        missing = [f"RAM weights '{RAM_WEIGHTS}' (prompt ram_weights={ram_weights})"] if not _is_file(ram_weights) else []
        if dape_weights is not None and not _is_file(dape_weights):
            missing.append(f"DAPE weights '{DAPE_WEIGHTS}' (prompt dape_weights={dape_weights})")
        if missing:
            raise MissingWeightsError(f"the RAM/DAPE prompt extractor needs {' and '.join(missing)}: download them "
                                      "(OSEDiff/SeeSR releases) and point the prompt's ram_weights / dape_weights at them, "
                                      "or choose the fixed extractor (tags='').")
        try:
            from ram.models.ram_lora import ram
        except ImportError:
            raise ImportError("the RAM/DAPE prompt extractor needs the 'ram' package of OSEDiff/SeeSR "
                              "(ram.models.ram_lora): see docs/reproduce.md") from None
        kwargs = {"pretrained_condition": dape_weights} if dape_weights else {}
        self.model = ram(pretrained=ram_weights, image_size=RAM_IMAGE_SIZE, vit="swin_l", **kwargs).eval().to(device)
        self.device, self.dtype = device, torch.float32  # official inference: fp32 (TVT inference.py:77)

    def set_dtype(self, dtype: torch.dtype) -> "RAMPromptExtractor":
        self.model.to(dtype)
        self.dtype = dtype
        return self

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> list[str]:
        from ram import inference_ram
        from torchvision.transforms.functional import normalize, resize

        x = resize(images.to(self.device).float().clamp(0, 1), [RAM_IMAGE_SIZE] * 2, antialias=True)
        tags = inference_ram(normalize(x, list(IMAGENET_MEAN), list(IMAGENET_STD)).to(self.dtype), self.model)
        return [t.replace(" |", ",") for t in tags]  # upstream RAM joins with " | ", OSEDiff's with ", "


def _is_file(path: str | None) -> bool:
    return path is not None and Path(path).is_file()


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------
EXTRACTORS: dict[str, Callable[[PromptSpec, str], PromptExtractor]] = {
    "fixed": lambda spec, device: FixedPromptExtractor(spec.tags),
    "ram": lambda spec, device: RAMPromptExtractor(spec.ram_weights, spec.dape_weights, device),
}


def register_extractor(name: str, factory: Callable[[PromptSpec, str], PromptExtractor]) -> None:
    """Make ``PromptSpec(extractor=name)`` build ``factory(spec, device)``."""
    EXTRACTORS[name] = factory


def build_prompt_extractor(spec: PromptSpec, device: str = "cpu") -> PromptExtractor:
    if spec.extractor not in EXTRACTORS:
        raise ValueError(f"prompt extractor must be one of {sorted(EXTRACTORS)}, got '{spec.extractor}'")
    return EXTRACTORS[spec.extractor](spec, device)


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> torch.Tensor:
    """Tokenise (pad to 77) and encode a whole batch at once -> (B, 77, D) CLIP last hidden states."""
    ids = tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(text_encoder.device)
    return text_encoder(ids)[0]
