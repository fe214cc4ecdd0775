"""The Table 6 ablations of Transfer VAE Training: a VAE-D4 trained without transfer, with LDM's recipe.

    python scripts/train_vae_ablation.py --config configs/ablations/vae_t1.yaml    # T1: mode=scratch, from scratch
    python scripts/train_vae_ablation.py --config configs/ablations/vae_t2.yaml    # T2: mode=align, T1 + L2 to the D8 latent

mode must be scratch or align (those configs set it). The transfer stages themselves are
scripts/train_vae_stage1.py and scripts/train_vae_stage2.py.
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import sys

from tvt.errors import ConfigError
from tvt.train.trainer import Trainer
from tvt.train.vae_transfer import VAETransferConfig, VAETransferStage
from tvt_scripts._cli import command


@command(VAETransferConfig)
def main(cfg: VAETransferConfig) -> None:
    if cfg.mode not in ("scratch", "align"):
        raise ConfigError(f"this script trains mode=scratch (T1) or mode=align (T2), the config sets mode={cfg.mode} "
                          "(stages 1 and 2: scripts/train_vae_stage1.py, scripts/train_vae_stage2.py)")
    Trainer(VAETransferStage(cfg)).fit()


if __name__ == "__main__":
    sys.exit(main())
