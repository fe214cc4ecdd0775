"""Parameter and FLOP counting with the paper's convention (REFERENCE.md).

The paper's "FLOPs" are multiply-accumulates (MACs) of convolution and linear layers; the matrix
products inside attention (QK^T, AV: bmm / SDPA) are not counted. torch's FlopCounterMode counts
2 FLOPs per MAC, so we take its convolution + addmm + mm counts and halve them. Models are built on
the meta device, so no weights or memory are needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

COUNTED_OPS = ("convolution", "addmm", "mm")  # attention bmm / sdpa deliberately left out


@dataclass
class Complexity:
    params: int
    flops: int  # MACs of conv + linear layers

    def __add__(self, other: "Complexity") -> "Complexity":
        return Complexity(self.params + other.params, self.flops + other.flops)


def count_params(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@torch.no_grad()
def count_macs(fn: Callable[[], object]) -> int:
    """MACs of conv/linear ops executed by ``fn()`` (the paper's FLOPs)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    counts = counter.get_flop_counts()["Global"]
    return sum(v for op, v in counts.items() if str(op).split(".")[-1] in COUNTED_OPS) // 2


# ---------------------------------------------------------------------------------------------
# Full-size configs of the paper's networks (no weights needed)
# ---------------------------------------------------------------------------------------------
SD21_UNET_CONFIG = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True,
)
SD21_VAE_CONFIG = dict(
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4, sample_size=768,
)
SD21_TEXT_CONFIG = dict(  # OpenCLIP ViT-H text tower as SD 2.1 uses it (penultimate layer: 23 layers)
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
    max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
)


def vae_complexity(vae, image_size: int = 512) -> Complexity:
    """Encode + decode of one image_size x image_size image."""
    x = torch.zeros(1, 3, image_size, image_size, device="meta")
    return Complexity(count_params(vae), count_macs(lambda: vae.decode(vae.encode(x).latent_dist.mode()).sample))


def unet_complexity(unet, latent_size: int, text_dim: int = 1024) -> Complexity:
    z = torch.zeros(1, 4, latent_size, latent_size, device="meta")
    c = torch.zeros(1, 77, text_dim, device="meta")
    t = torch.tensor([999], device="meta")
    return Complexity(count_params(unet), count_macs(lambda: unet(z, t, encoder_hidden_states=c)))


def text_encoder_complexity(text_encoder) -> Complexity:
    ids = torch.zeros(1, 77, dtype=torch.long, device="meta")
    return Complexity(count_params(text_encoder), count_macs(lambda: text_encoder(ids)))


def paper_models_complexity(image_size: int = 512) -> dict[str, Complexity]:
    """Params and FLOPs of every network of Tables 1 and 4, built on the meta device."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .models.ce_unet import ce_unet_config
    from .models.vae import build_vae_d4

    lat8, lat4 = image_size // 8, image_size // 4
    with torch.device("meta"):
        sd_unet = UNet2DConditionModel(**SD21_UNET_CONFIG)
        ce_unet = UNet2DConditionModel(**ce_unet_config(sd_unet.config))
        out = {
            "vae_d8": vae_complexity(AutoencoderKL(**SD21_VAE_CONFIG), image_size),
            "vae_d4": vae_complexity(build_vae_d4("d4"), image_size),
            "vae_v1": vae_complexity(build_vae_d4("v1"), image_size),
            "vae_v2": vae_complexity(build_vae_d4("v2"), image_size),
            f"unet_sd21_{lat8}": unet_complexity(sd_unet, lat8),
            f"unet_sd21_{lat4}": unet_complexity(sd_unet, lat4),
            f"ce_unet_{lat4}": unet_complexity(ce_unet, lat4),
            "text_encoder": text_encoder_complexity(CLIPTextModel(CLIPTextConfig(**SD21_TEXT_CONFIG))),
        }
    # One-step SR = VAE encode/decode + one UNet pass + the prompt's text encoding (the DAPE tagger is
    # not counted: its RAM/Swin-L code is not among our dependencies; see scripts/complexity.py).
    out["osediff_total"] = out["vae_d8"] + out[f"unet_sd21_{lat8}"] + out["text_encoder"]
    out["tvt_total"] = out["vae_d4"] + out[f"ce_unet_{lat4}"] + out["text_encoder"]
    return out
