"""Params and FLOPs (paper convention: MACs of conv + linear layers) of the paper's networks, side by side with
the paper (Tables 1, 4, 5, 7 and Sec. 3.3). Everything is built on the meta device: no weights, ~10 s on a CPU.

    python scripts/complexity.py [--json PATH] [--markdown PATH] [--image-size 512]
"""
import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from tvt.flops import paper_models_complexity, tagger_image_encoder_complexity
from tvt.io import atomic_path

# name -> (paper params, paper FLOPs, where); None where the paper gives no figure.
PAPER = {
    "vae_d8": (83.7e6, 1.8e12, "Table 1"),
    "vae_d4": (15.2e6, 1.1e12, "Table 1"),
    "vae_v1": (None, None, ""),
    "vae_v2": (None, None, ""),
    "unet_sd21_64": (865.9e6, None, "SD 2.1"),
    "unet_sd21_128": (None, 1.35e12, "Sec. 3.3"),
    "ce_unet_128": (None, 0.73e12, "Sec. 3.3"),
    "text_encoder": (None, None, ""),
    "osediff_total": (1.77e9, 2.27e12, "Table 4 (incl. DAPE)"),
    "tvt_total": (1.72e9, 1.97e12, "Table 4 (incl. DAPE)"),
}
# Whole-pipeline FLOPs the paper reports: (VAE, UNet, paper FLOPs, where). Each = VAE + UNet + text encoder + tagger.
PAPER_TOTALS = [
    ("OSEDiff = S1", "vae_d8", "unet_sd21_64", 2.27e12, "Table 4, 7"),
    ("TVT", "vae_d4", "ce_unet_128", 1.97e12, "Table 4, 5, 7"),
    ("V1", "vae_v1", "ce_unet_128", 3.02e12, "Table 5"),
    ("V2", "vae_v2", "ce_unet_128", 2.40e12, "Table 5"),
    ("S4 (VAE-D4 + SD UNet)", "vae_d4", "unet_sd21_128", 2.59e12, "Table 7"),
]


def _pct(ours: float, paper: float | None) -> str:
    return f"{100 * (ours / paper - 1):+.1f}%" if paper else ""


def component_table(res) -> list[str]:
    rows = ["| model | params (M) | paper | diff | FLOPs (T) | paper | diff | attention MACs (T, not counted) |",
            "|---|---|---|---|---|---|---|---|"]
    for name, c in res.items():
        pp, pf, where = PAPER.get(name, (None, None, ""))
        rows.append(f"| {name} | {c.params / 1e6:.3f} | {f'{pp / 1e6:.1f}' if pp else ''} | {_pct(c.params, pp)} | "
                    f"{c.flops / 1e12:.3f} | {f'{pf / 1e12:.2f}' if pf else ''} | {_pct(c.flops, pf)} | "
                    f"{c.attention_flops / 1e12:.3f} |")
    return rows


def totals_table(res, tagger) -> list[str]:
    """Which convention reproduces the paper's whole-pipeline totals (all differences in one place)."""
    t = tagger.flops if tagger else 0
    rows = ["| pipeline | paper (T) | VAE+UNet+text enc. | + tagger (Swin-L@384) | diff | + tagger + 1/2 VAE attention | diff | + tagger + VAE attention | diff |",
            "|---|---|---|---|---|---|---|---|---|"]
    for label, vae, unet, paper, where in PAPER_TOTALS:
        base = res[vae].flops + res[unet].flops + res["text_encoder"].flops
        attn = res[vae].attention_flops
        cols = [base + t, base + t + attn / 2, base + t + attn]
        rows.append(f"| {label} ({where}) | {paper / 1e12:.2f} | {base / 1e12:.3f} | "
                    + " | ".join(f"{v / 1e12:.3f} | {_pct(v, paper)}" for v in cols) + " |")
    return rows


def machine() -> str:
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                   if l.startswith("Model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    return f"{cpu}; torch {torch.__version__}; Python {platform.python_version()}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="write {name: {params, flops}} as JSON")
    ap.add_argument("--markdown", type=Path, help="write the tables as a markdown report")
    ap.add_argument("--image-size", type=int, default=512)
    args = ap.parse_args(argv)

    start = time.time()
    res = paper_models_complexity(args.image_size)
    tagger = tagger_image_encoder_complexity()
    seconds = time.time() - start

    lines = component_table(res)
    lines += ["", "Totals above = VAE encode+decode + one UNet call + CLIP text encoder. The paper's pipeline totals "
              "also contain the DAPE tagger; its image encoder (RAM's Swin-L at 384x384, timm config) is "
              + (f"{tagger.params / 1e6:.1f}M params / {tagger.flops / 1e12:.3f}T." if tagger else "not countable here (timm missing)."),
              ""]
    if args.image_size == 512:
        lines += totals_table(res, tagger)
        gap = {k: PAPER[k][0] - res[k].params for k in ("osediff_total", "tvt_total")}
        lines += ["", f"Params: Table 4 minus ours (VAE+UNet+text encoder) = {gap['osediff_total'] / 1e9:.3f}B (OSEDiff), "
                  f"{gap['tvt_total'] / 1e9:.3f}B (TVT): the tagger (DAPE) and whatever else the paper counted.",
                  f"TVT / OSEDiff FLOPs: {res['tvt_total'].flops / res['osediff_total'].flops:.3f} without the tagger "
                  f"(paper, with it: {1.97 / 2.27:.3f})."]
    text = "\n".join(lines)
    print(text)
    if args.json:
        out = dict(res)
        if tagger is not None:  # Table 4's totals include the DAPE tagger (its Swin-L image encoder, counted here)
            out.update(tagger=tagger, osediff_total_with_tagger=res["osediff_total"] + tagger,
                       tvt_total_with_tagger=res["tvt_total"] + tagger)
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({k: {"params": c.params, "flops": c.flops} for k, c in out.items()}, indent=2))
    if args.markdown:
        head = [f"# Complexity: params and FLOPs at {args.image_size}x{args.image_size} output",
                "",
                f"Written by `python scripts/complexity.py --markdown {args.markdown}` in {seconds:.1f} s.",
                f"Machine: {machine()}. Counts are analytic (models built on the meta device with full-size "
                "SD 2.1-base configs, no weights), so they do not depend on the machine; no GPU was used.",
                "FLOPs = MACs of convolution and linear layers (torch FlopCounterMode convolution + addmm + mm, halved); "
                "attention QK^T / AV products are listed apart and not counted, as the paper's FLOPs leave them out.",
                "", ""]
        with atomic_path(args.markdown) as tmp:
            tmp.write_text("\n".join(head) + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
