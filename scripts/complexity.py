"""Params and FLOPs (paper convention: MACs of conv + linear layers) of the paper's networks at 512x512.

    python scripts/complexity.py [--json PATH]
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tvt.flops import paper_models_complexity  # noqa: E402

# name -> (paper params, paper FLOPs, where); None where the paper gives no figure.
PAPER = {
    "vae_d8": (83.7e6, 1.8e12, "Table 1"),
    "vae_d4": (15.2e6, 1.1e12, "Table 1"),
    "vae_v1": (None, None, ""),
    "vae_v2": (None, None, ""),
    "unet_sd21_64": (865.9e6, None, ""),
    "unet_sd21_128": (None, 1.35e12, "Sec. 3.3"),
    "ce_unet_128": (None, 0.73e12, "Sec. 3.3"),
    "text_encoder": (None, None, ""),
    "osediff_total": (1.77e9, 2.27e12, "Table 4 (incl. DAPE)"),
    "tvt_total": (1.72e9, 1.97e12, "Table 4 (incl. DAPE)"),
}


def _fmt(ours: float, paper: float | None, unit: float, suffix: str) -> str:
    s = f"{ours / unit:8.3f}{suffix}"
    if paper:
        s += f" (paper {paper / unit:.2f}{suffix}, {100 * (ours / paper - 1):+.1f}%)"
    return s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="write raw counts as JSON")
    ap.add_argument("--image-size", type=int, default=512)
    args = ap.parse_args(argv)
    res = paper_models_complexity(args.image_size)
    print(f"{'model':<16} {'params':<38} FLOPs (MACs)")
    for name, c in res.items():
        p_par, p_flops, _ = PAPER.get(name, (None, None, ""))
        print(f"{name:<16} {_fmt(c.params, p_par, 1e6, 'M'):<38} {_fmt(c.flops, p_flops, 1e12, 'T')}")
    gap_p = {k: PAPER[k][0] - res[k].params for k in ("osediff_total", "tvt_total")}
    gap_f = {k: PAPER[k][1] - res[k].flops for k in ("osediff_total", "tvt_total")}
    print(f"Table 4 totals also include the DAPE prompt tagger (not counted here). Implied by the paper: "
          f"{gap_p['osediff_total'] / 1e9:.3f}B / {gap_f['osediff_total'] / 1e12:.3f}T (OSEDiff) vs "
          f"{gap_p['tvt_total'] / 1e9:.3f}B / {gap_f['tvt_total'] / 1e12:.3f}T (TVT): the same tagger in both.")
    ratio = res["tvt_total"].flops / res["osediff_total"].flops
    print(f"TVT / OSEDiff FLOPs without the tagger: {ratio:.3f} (paper, with it: {1.97 / 2.27:.3f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({k: {"params": c.params, "flops": c.flops} for k, c in res.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
