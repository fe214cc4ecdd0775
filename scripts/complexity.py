"""Params and FLOPs (the paper's convention: MACs of conv + linear layers) of the paper's networks beside the
paper's figures (Tables 1, 4, 5, 7; Sec. 3.3), then Tables 5 and 7 row by row (every architecture of
tvt.models.architectures). Every model is built on the meta device: no weights, ~20 s on a CPU.

    python scripts/complexity.py [--json PATH] [--markdown PATH] [--image_size 512]
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import json
import sys
import time
from dataclasses import dataclass
from typing import Optional

from tvt.flops import (ablation_flops, ablation_table, paper_comparison, paper_models_complexity,
                       tagger_image_encoder_complexity)
from tvt.io import atomic_path
from tvt_scripts._cli import command


@dataclass
class ComplexityConfig:
    image_size: int = 512  # output size (the paper counts at 512x512)
    json: Optional[str] = None  # write {name: {params, flops}} here
    markdown: Optional[str] = None  # write the tables here


@command(ComplexityConfig)
def main(cfg: ComplexityConfig) -> int:
    start = time.time()
    res = paper_models_complexity(cfg.image_size)
    tagger = tagger_image_encoder_complexity()
    text = paper_comparison(res, tagger) + "\n\n## Tables 5 and 7\n\n" + ablation_table(res, tagger, cfg.image_size)
    print(text)
    if cfg.json:
        out = dict(res)
        if tagger is not None:  # Table 4's totals include the DAPE tagger (its Swin-L image encoder)
            out.update(tagger=tagger, osediff_total_with_tagger=res["osediff_total"] + tagger,
                       tvt_total_with_tagger=res["tvt_total"] + tagger)
        with atomic_path(cfg.json) as tmp:
            data = {k: {"params": c.params, "flops": c.flops} for k, c in out.items()}
            data["ablations"] = ablation_flops(res, tagger, cfg.image_size)  # whole models, Tables 5 and 7
            tmp.write_text(json.dumps(data, indent=2))
    if cfg.markdown:
        head = (f"# Complexity at {cfg.image_size}x{cfg.image_size} output\n\nWritten by `python scripts/complexity.py "
                f"--markdown {cfg.markdown}` in {time.time() - start:.1f} s. Counts are analytic (full-size SD 2.1-base "
                "configs on the meta device, no weights): they do not depend on the machine. FLOPs = MACs of convolution "
                "and linear layers; attention QK^T / AV products are listed apart, as the paper's FLOPs leave them out.\n\n")
        with atomic_path(cfg.markdown) as tmp:
            tmp.write_text(head + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
