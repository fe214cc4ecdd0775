"""Build a synthetic HR/LR test set with the Real-ESRGAN degradation (fixed seed; reruns are byte-identical).

    python scripts/make_testset.py --hr data/DIV2K_valid_HR --out data/synthetic_test --size 512 --seed 0
"""
import argparse

import torch

from tvt.data.testset import make_testset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hr", required=True, help="folder, image, glob or .txt list of HR images")
    p.add_argument("--out", required=True, help="output folder (gets HR/, LR/, manifest.json)")
    p.add_argument("--size", type=int, default=512, help="HR centre-crop size (smaller images are reflect-padded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default="configs/degradation/realesrgan.yaml", help="degradation YAML or name")
    p.add_argument("--num", type=int, default=None, help="use only the first N images")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    m = make_testset(args.hr, args.out, args.size, args.seed, args.config, args.num, args.device)
    print(f"wrote {len(m['sources'])} HR/LR pairs to {args.out}")


if __name__ == "__main__":
    main()
