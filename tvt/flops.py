"""Parameter and FLOP counting with the paper's convention (Tables 1, 4, 5).

The paper's "FLOPs" are multiply-accumulates (MACs) of convolution and linear layers; the matrix products inside
attention (QK^T, AV: bmm / baddbmm / SDPA) are not counted. torch's FlopCounterMode counts 2 FLOPs per MAC, so
we take its convolution + addmm + mm counts (nn.Linear lowers to addmm/mm) and halve them. Attention MACs are
counted separately (``attention_flops``) for reference. Models are built on the meta device: no weights, no memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from .models.sd21 import SD21_TEXT_CONFIG, SD21_UNET_CONFIG, SD21_VAE_CONFIG

COUNTED_OPS = ("convolution", "addmm", "mm", "linear")  # the paper's FLOPs
ATTENTION_OPS = ("bmm", "baddbmm")  # + any scaled_dot_product_* kernel: left out of the paper's FLOPs


@dataclass
class Complexity:
    params: int
    flops: int  # MACs of conv + linear layers (the paper's "FLOPs")
    attention_flops: int = 0  # MACs of attention matmuls (not in the paper's count)

    def __add__(self, other: "Complexity") -> "Complexity":
        return Complexity(self.params + other.params, self.flops + other.flops, self.attention_flops + other.attention_flops)


def count_params(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@torch.no_grad()
def macs_by_op(fn: Callable, *inputs, **kwargs) -> dict[str, int]:
    """MACs (FLOPs / 2) per aten op executed by ``fn(*inputs, **kwargs)``, e.g. {"convolution": ..., "bmm": ...}."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn(*inputs, **kwargs)
    out: dict[str, int] = {}
    for op, v in counter.get_flop_counts()["Global"].items():
        name = str(op).split(".")[-1]
        out[name] = out.get(name, 0) + v // 2
    return out


def _is_attention(op: str) -> bool:
    return op in ATTENTION_OPS or "scaled_dot_product" in op


def count_macs(fn: Callable, *inputs, **kwargs) -> int:
    """The paper's FLOPs of ``fn(*inputs, **kwargs)``: MACs of conv and linear ops only."""
    return sum(v for op, v in macs_by_op(fn, *inputs, **kwargs).items() if op in COUNTED_OPS)


def complexity(model: torch.nn.Module, fn: Callable, *inputs, **kwargs) -> Complexity:
    """Params of ``model`` and the MACs of ``fn(*inputs)``, split into counted and attention."""
    by_op = macs_by_op(fn, *inputs, **kwargs)
    return Complexity(count_params(model), sum(v for op, v in by_op.items() if op in COUNTED_OPS),
                      sum(v for op, v in by_op.items() if _is_attention(op)))


# ---------------------------------------------------------------------------------------------
# The paper's networks at full size (SD 2.1-base shapes, tvt.models.sd21; no weights needed)
# ---------------------------------------------------------------------------------------------
def vae_complexity(vae, image_size: int = 512) -> Complexity:
    """Encode + decode of one image_size x image_size image."""
    x = torch.zeros(1, 3, image_size, image_size, device="meta")
    return complexity(vae, lambda: vae.decode(vae.encode(x).latent_dist.mode()).sample)


def unet_complexity(unet, latent_size: int, text_dim: int = 1024) -> Complexity:
    """One UNet call on a (1, 4, latent_size, latent_size) latent with a 77-token prompt."""
    z = torch.zeros(1, 4, latent_size, latent_size, device="meta")
    c = torch.zeros(1, 77, text_dim, device="meta")
    t = torch.tensor([999], device="meta")
    return complexity(unet, lambda: unet(z, t, encoder_hidden_states=c))


def text_encoder_complexity(text_encoder) -> Complexity:
    ids = torch.zeros(1, 77, dtype=torch.long, device="meta")
    return complexity(text_encoder, lambda: text_encoder(ids))


def paper_models_complexity(image_size: int = 512) -> dict[str, Complexity]:
    """Params and FLOPs of the networks of Tables 1, 4 and 5 at ``image_size`` output, on the meta device.

    Totals = VAE encode + decode + one UNet call + the CLIP text encoder. The paper's Table 4 totals also
    contain the DAPE prompt tagger, which is not among our dependencies (see ``tagger_image_encoder_complexity``).
    """
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
    out["osediff_total"] = out["vae_d8"] + out[f"unet_sd21_{lat8}"] + out["text_encoder"]
    out["tvt_total"] = out["vae_d4"] + out[f"ce_unet_{lat4}"] + out["text_encoder"]
    return out


def tagger_image_encoder_complexity() -> Complexity | None:
    """DAPE's image encoder (RAM's Swin-L at 384x384) from timm's config, as an estimate of the tagger's
    FLOPs (its tagging head is left out). None when timm (a pyiqa dependency) is not installed."""
    try:
        import timm
    except ImportError:
        return None
    with torch.device("meta"):
        swin = timm.create_model("swin_large_patch4_window12_384", pretrained=False)
        return complexity(swin, swin, torch.zeros(1, 3, 384, 384))


# ---------------------------------------------------------------------------------------------
# Side by side with the paper (Tables 1, 4, 5, 7 and Sec. 3.3)
# ---------------------------------------------------------------------------------------------
# name -> (paper params, paper FLOPs, where); None where the paper gives no figure.
PAPER = {
    "vae_d8": (83.7e6, 1.8e12, "Table 1"),
    "vae_d4": (15.2e6, 1.1e12, "Table 1"),
    "unet_sd21_64": (865.9e6, None, "SD 2.1"),
    "unet_sd21_128": (None, 1.35e12, "Sec. 3.3"),
    "ce_unet_128": (None, 0.73e12, "Sec. 3.3"),
    "osediff_total": (1.77e9, 2.27e12, "Table 4 (incl. DAPE)"),
    "tvt_total": (1.72e9, 1.97e12, "Table 4 (incl. DAPE)"),
}
# Whole-pipeline FLOPs the paper reports: (label, VAE, UNet, paper FLOPs, where); each = VAE + UNet + text encoder + tagger.
PAPER_TOTALS = [
    ("OSEDiff = S1", "vae_d8", "unet_sd21_64", 2.27e12, "Table 4, 7"),
    ("TVT", "vae_d4", "ce_unet_128", 1.97e12, "Table 4, 5, 7"),
    ("V1", "vae_v1", "ce_unet_128", 3.02e12, "Table 5"),
    ("V2", "vae_v2", "ce_unet_128", 2.40e12, "Table 5"),
    ("S4 (VAE-D4 + SD UNet)", "vae_d4", "unet_sd21_128", 2.59e12, "Table 7"),
]


def _pct(ours: float, paper: float | None) -> str:
    return f"{100 * (ours / paper - 1):+.1f}%" if paper else ""


def paper_comparison(res: dict[str, Complexity], tagger: Complexity | None) -> str:
    """Markdown: every network beside the paper's figure, then which convention gives the paper's totals."""
    rows = ["| model | params (M) | paper | diff | FLOPs (T) | paper | diff | attention MACs (T, not counted) |",
            "|---|---|---|---|---|---|---|---|"]
    for name, c in res.items():
        pp, pf, _ = PAPER.get(name, (None, None, ""))
        rows.append(f"| {name} | {c.params / 1e6:.3f} | {f'{pp / 1e6:.1f}' if pp else ''} | {_pct(c.params, pp)} | "
                    f"{c.flops / 1e12:.3f} | {f'{pf / 1e12:.2f}' if pf else ''} | {_pct(c.flops, pf)} | "
                    f"{c.attention_flops / 1e12:.3f} |")
    rows += ["", "Totals above = VAE encode+decode + one UNet call + CLIP text encoder. The paper's pipeline totals also "
             "contain the DAPE tagger; its image encoder (RAM's Swin-L at 384x384, timm config) is "
             + (f"{tagger.params / 1e6:.1f}M params / {tagger.flops / 1e12:.3f}T." if tagger else "not countable here (timm missing)."), ""]
    if "tvt_total" not in res or "vae_v1" not in res:
        return "\n".join(rows)
    t = tagger.flops if tagger else 0
    rows += ["| pipeline | paper (T) | VAE+UNet+text enc. | + tagger (Swin-L@384) | diff | + tagger + 1/2 VAE attention | diff "
             "| + tagger + VAE attention | diff |", "|---|---|---|---|---|---|---|---|---|"]
    for label, vae, unet, paper, where in PAPER_TOTALS:
        base = res[vae].flops + res[unet].flops + res["text_encoder"].flops
        cols = [base + t, base + t + res[vae].attention_flops / 2, base + t + res[vae].attention_flops]
        rows.append(f"| {label} ({where}) | {paper / 1e12:.2f} | {base / 1e12:.3f} | "
                    + " | ".join(f"{v / 1e12:.3f} | {_pct(v, paper)}" for v in cols) + " |")
    gap = {k: PAPER[k][0] - res[k].params - (tagger.params if tagger else 0) for k in ("osediff_total", "tvt_total")}
    rows += ["", f"Params: Table 4 minus ours (VAE + UNet + text encoder + the tagger's Swin-L) = {gap['osediff_total'] / 1e9:.3f}B "
             f"(OSEDiff), {gap['tvt_total'] / 1e9:.3f}B (TVT): RAM's tagging head and whatever else the paper counted.",
             f"TVT / OSEDiff FLOPs: {res['tvt_total'].flops / res['osediff_total'].flops:.3f} without the tagger, "
             f"{(res['tvt_total'].flops + t) / (res['osediff_total'].flops + t):.3f} with it (paper: {1.97 / 2.27:.3f})."]
    return "\n".join(rows)
