"""Parameter and FLOP counting with the paper's convention (Tables 1, 4, 5, 7).

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
    """One UNet call on a (1, C, latent_size, latent_size) latent (C: the UNet's, 4 but for S3) with a 77-token prompt."""
    z = torch.zeros(1, unet.config.in_channels, latent_size, latent_size, device="meta")
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
    from .models.architectures import ARCHITECTURES

    for name in ARCHITECTURES:  # the parts of Tables 5 and 7's other rows (S2's VAE, S3's and S5's UNets, ...)
        for key in architecture_parts(name, image_size):
            if key not in out:
                out[key] = _part_complexity(key, image_size)
    out["osediff_total"] = out["vae_d8"] + out[f"unet_sd21_{lat8}"] + out["text_encoder"]
    out["tvt_total"] = out["vae_d4"] + out[f"ce_unet_{lat4}"] + out["text_encoder"]
    return out


UNET_KEYS = {"sd": "unet_sd21", "ce": "ce_unet", "c8": "c8_unet", "pruned": "pruned_unet"}  # registry kind -> name


def architecture_parts(name: str, image_size: int = 512) -> tuple[str, str]:
    """The names (as ``paper_models_complexity`` keys them) of the VAE and UNet of a registry architecture."""
    from .models.architectures import get_architecture
    from .models.vae import VAE_VARIANTS

    arch = get_architecture(name)
    if arch.vae == "trained":
        vae, stages = f"vae_{arch.vae_variant}", len(VAE_VARIANTS[arch.vae_variant]["block_out_channels"])
    else:
        vae, stages = {"sd_vae_d8": "vae_d8", "vae_d8_sc": "vae_d8_sc"}[arch.vae], len(SD21_VAE_CONFIG["block_out_channels"])
    return vae, f"{UNET_KEYS[arch.unet]}_{image_size // 2 ** (stages - 1)}"


def _part_complexity(key: str, image_size: int) -> Complexity:
    """Count one part named as ``architecture_parts`` names it, built on the meta device."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from .models.architectures import ARCHITECTURES
    from .models.vae import build_vae_d4
    from .models.vae_skip import AutoencoderKLSkip

    with torch.device("meta"):
        if key in ("vae_d8", "vae_d8_sc"):
            return vae_complexity((AutoencoderKL if key == "vae_d8" else AutoencoderKLSkip)(**SD21_VAE_CONFIG), image_size)
        if key.startswith("vae_"):
            return vae_complexity(build_vae_d4(key[len("vae_"):]), image_size)
        kind, latent = next((k, int(key[len(v) + 1:])) for k, v in UNET_KEYS.items() if key.startswith(v + "_"))
        arch = next(a for a in ARCHITECTURES.values() if a.unet == kind)
        unet = arch.build_unet(UNet2DConditionModel(**SD21_UNET_CONFIG), copy_sd=False)
        return unet_complexity(unet, latent)


def architecture_complexity(name: str, image_size: int = 512) -> dict[str, Complexity]:
    """{"vae": encode + decode, "unet": one call at the VAE's latent size} of a registry architecture
    (tvt.models.architectures) at full size, on the meta device."""
    vae, unet = architecture_parts(name, image_size)
    return {"vae": _part_complexity(vae, image_size), "unet": _part_complexity(unet, image_size)}


def whole_model_flops(parts: dict[str, Complexity], text: Complexity, tagger: Complexity | None) -> dict[str, float]:
    """A whole model's FLOPs two ways. "conv_linear": VAE + UNet + text encoder + tagger image encoder, conv and
    linear MACs (the convention of Table 4's counts). "paper_totals": that plus half the VAE's attention matmul MACs
    (one of its two products, QK^T / AV, which are equal in size): the one rule that puts every whole-model figure
    of Tables 4, 5 and 7 within 1 % (V1, whose mid blocks attend over 128^2 tokens, is 9 % under without it), as a
    counter that counts ``bmm`` but not ``baddbmm`` (fvcore's defaults) gives for diffusers' classic VAE attention.
    A reading of the paper's numbers, not a statement of the paper."""
    base = parts["vae"].flops + parts["unet"].flops + text.flops + (tagger.flops if tagger else 0)
    return {"conv_linear": base, "paper_totals": base + parts["vae"].attention_flops / 2}


def ablation_table(res: dict[str, Complexity], tagger: Complexity | None, image_size: int = 512) -> str:
    """Markdown: Tables 5 and 7 (and TVT), our whole-model FLOPs beside the paper's, one row per registry
    architecture; ``res``: ``paper_models_complexity``'s parts."""
    from .models.architectures import ARCHITECTURES

    rows = ["| architecture | paper row | VAE (T) | UNet (T) | params (M, VAE + UNet) | whole model, conv + linear (T) "
            "| + 1/2 VAE attention (T) | paper (T) | diff |", "|---|---|---|---|---|---|---|---|---|"]
    for name, arch in ARCHITECTURES.items():
        vae, unet = (res[k] for k in architecture_parts(name, image_size))
        total = whole_model_flops({"vae": vae, "unet": unet}, res["text_encoder"], tagger)
        rows.append(f"| `{name}` | {arch.row} ({arch.tables}) | {vae.flops / 1e12:.3f} | {unet.flops / 1e12:.3f} | "
                    f"{(vae.params + unet.params) / 1e6:.1f} | {total['conv_linear'] / 1e12:.3f} | "
                    f"{total['paper_totals'] / 1e12:.3f} | {arch.paper_flops / 1e12:.2f} | "
                    f"{_pct(total['paper_totals'], arch.paper_flops)} |")
    rows += ["", "Whole model = VAE encode + decode + one UNet call + CLIP text encoder + the tagger's image encoder "
             f"({'RAM Swin-L at 384x384' if tagger else 'timm missing: not counted'}), conv + linear MACs; the next "
             "column adds half the VAE's attention matmuls (tvt.flops.whole_model_flops says why)."]
    return "\n".join(rows)


def ablation_flops(res: dict[str, Complexity], tagger: Complexity | None, image_size: int = 512) -> dict[str, dict]:
    """{architecture: {"conv_linear", "paper_totals", "paper"}} whole-model FLOPs of every registry architecture."""
    from .models.architectures import ARCHITECTURES

    out = {}
    for name, arch in ARCHITECTURES.items():
        vae, unet = (res[k] for k in architecture_parts(name, image_size))
        out[name] = {**whole_model_flops({"vae": vae, "unet": unet}, res["text_encoder"], tagger), "paper": arch.paper_flops}
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
        from .prompts import RAM_IMAGE_SIZE

        return complexity(swin, swin, torch.zeros(1, 3, RAM_IMAGE_SIZE, RAM_IMAGE_SIZE))


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
