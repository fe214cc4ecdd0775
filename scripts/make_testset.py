"""Build a synthetic HR/LR test set with the Real-ESRGAN degradation (fixed seed: reruns are byte-identical).

    python scripts/make_testset.py --hr data/DIV2K_valid_HR --out data/DIV2K-centre-crops --size 512 --seed 0

Writes OUT/HR/*.png (centre crops; smaller images reflect-padded), OUT/LR/*.png and OUT/manifest.json.
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import sys
from dataclasses import dataclass
from typing import Optional

import torch
from omegaconf import MISSING

from tvt.data.testset import make_testset
from tvt_scripts._cli import command


@dataclass
class TestsetConfig:
    hr: str = MISSING  # folder, image, glob or .txt list of HR images (required)
    out: str = MISSING  # output folder (gets HR/, LR/, manifest.json) (required)
    size: int = 512  # HR centre-crop size
    seed: int = 0
    degradation: str = "realesrgan"  # a degradation preset (realesrgan, tiny) or a YAML file
    num: Optional[int] = None  # only the first N images
    device: str = "cpu"  # CPU and CUDA noise streams differ: the manifest records it


@command(TestsetConfig)
def main(cfg: TestsetConfig) -> int:
    torch.set_grad_enabled(False)
    m = make_testset(cfg.hr, cfg.out, cfg.size, cfg.seed, cfg.degradation, cfg.num, cfg.device)
    print(f"wrote {len(m['sources'])} HR/LR pairs and manifest.json to {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
