"""Tiny offline fixtures in diffusers format.

``make_tiny_sd(folder)`` writes a folder shaped like ``stabilityai/stable-diffusion-2-1-base``
(``unet/ vae/ text_encoder/ tokenizer/ scheduler/ model_index.json``) with tiny random weights, so
every loader in tvt is exercised through the same ``from_pretrained`` path as the real model.
``make_tiny_vae_d4(folder)`` does the same for VAE-D4. Nothing here downloads anything.

These weights are random: they exist to test code paths, never to produce real images.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .models.sd21 import SD21_SCHEDULER_CONFIG, SD21_UNET_CONFIG, SD21_VAE_CONFIG
from .models.vae import build_vae_d4

TINY_TEXT_DIM = 32
SD21_SCHEDULER = SD21_SCHEDULER_CONFIG  # the name test and benchmark code import


def tiny_unet_config() -> dict:
    """SD 2.1-base's UNet layout (4 levels, 3 cross-attention levels, linear projection), tiny widths."""
    return {**SD21_UNET_CONFIG, "sample_size": 32, "block_out_channels": (16, 32, 32, 32),
            "attention_head_dim": (2, 2, 4, 4), "cross_attention_dim": TINY_TEXT_DIM, "norm_num_groups": 8}


def tiny_vae_d8_config() -> dict:
    """SD 2.1-base's VAE-D8 layout (4 stages -> 8x, mid block with attention), tiny widths."""
    return {**SD21_VAE_CONFIG, "block_out_channels": (16, 32, 32, 32), "norm_num_groups": 8, "sample_size": 64}


TINY_VAE_WIDTHS = {"d4": (16, 32, 32), "v1": (16, 32, 64), "v2": (16, 32, 64), "d8c8": (16, 32, 32, 32)}  # SD's / 8


def tiny_vae_d4_kwargs(variant: str = "d4") -> dict:
    """Tiny widths keeping the variant's layout (tvt.models.vae.vae_variant_of tells them apart)."""
    return dict(block_out_channels=TINY_VAE_WIDTHS[variant], norm_num_groups=8, sample_size=64)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _write_tokenizer(folder: Path) -> None:
    """A minimal CLIP BPE vocabulary: bytes, their word-final forms and the two special tokens."""
    chars = list(_bytes_to_unicode().values())
    vocab_list = chars + [c + "</w>" for c in chars]
    merges = ["#version: 0.2"]
    # a few merges so that real BPE work happens on common words
    for pair in ["t h", "th e</w>", "a n", "i n", "e r", "o n"]:
        a, b = pair.split()
        merges.append(pair)
        vocab_list.append(a + b)
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            dict(
                tokenizer_class="CLIPTokenizer",
                model_max_length=77,
                bos_token="<|startoftext|>",
                eos_token="<|endoftext|>",
                unk_token="<|endoftext|>",
                pad_token="!",  # SD 2.1 pads with "!"
                do_lower_case=True,
            )
        )
    )
    (folder / "special_tokens_map.json").write_text(
        json.dumps(dict(bos_token="<|startoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token="!"))
    )


def make_tiny_sd(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random SD 2.1-base-shaped diffusers folder and return its path."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    _write_tokenizer(folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    text_cfg = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TINY_TEXT_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=TINY_TEXT_DIM,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    CLIPTextModel(text_cfg).save_pretrained(folder / "text_encoder")
    UNet2DConditionModel(**tiny_unet_config()).save_pretrained(folder / "unet")
    AutoencoderKL(**tiny_vae_d8_config()).save_pretrained(folder / "vae")
    DDPMScheduler(**SD21_SCHEDULER_CONFIG).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "_diffusers_version": "0.42.1",
                "scheduler": ["diffusers", "DDPMScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "tvt_tiny_random_fixture": True,
            },
            indent=2,
        )
    )
    return folder


def make_tiny_vae_d4(folder: str | Path, seed: int = 0, variant: str = "d4") -> Path:
    """Write a tiny random VAE-D4 folder (same class and config keys as the full-size one)."""
    torch.manual_seed(seed)
    folder = Path(folder)
    build_vae_d4(variant, **tiny_vae_d4_kwargs(variant)).save_pretrained(folder)
    return folder


def make_random_sd(folder: str | Path, size: str = "tiny", dtype: torch.dtype = torch.float32, seed: int = 0) -> Path:
    """Write an SD 2.1-base-shaped folder with random weights: ``tiny`` widths (``make_tiny_sd``) or SD 2.1's
    ``full`` ones (UNet 866M, VAE-D8 84M, text encoder 340M parameters; saved in ``dtype``, 2.6 GB in bf16) for
    benchmarks at the real shapes. The tokenizer is the tiny one in both: it only sets which ids the text holds."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from .models.sd21 import SD21_TEXT_CONFIG

    if size not in ("tiny", "full"):
        raise ValueError(f"size must be 'tiny' or 'full', got '{size}'")
    folder = make_tiny_sd(folder, seed)
    if size == "full":
        tok = CLIPTokenizer.from_pretrained(folder / "tokenizer")
        text = CLIPTextConfig(**SD21_TEXT_CONFIG, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id)
        for name, build in (("unet", lambda: UNet2DConditionModel(**SD21_UNET_CONFIG)),
                            ("vae", lambda: AutoencoderKL(**SD21_VAE_CONFIG)),
                            ("text_encoder", lambda: CLIPTextModel(text))):
            build().to(dtype).save_pretrained(folder / name)  # same file names as the tiny model's: overwritten
    return folder
