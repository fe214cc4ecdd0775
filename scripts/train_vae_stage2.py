"""Transfer VAE Training, stage 2 (paper Sec. 3.2, Eq. 3-4): the VAE-D4 encoder learns under the frozen stage-1
decoder (L1 + LPIPS + LDM's KL, no GAN).

    python scripts/train_vae_stage2.py --config configs/vae_stage2.yaml sd_model=weights/sd21-base \\
        decoder_from=latest:vae_stage1
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml --num_processes 8 \\
        scripts/train_vae_stage2.py --config configs/vae_stage2.yaml ...

decoder_from: the stage-1 export folder, or latest:vae_stage1 for the newest finished runs/NNN-vae_stage1.
This script trains mode=stage2 (its default); a config that sets another mode is refused. The result feeds
scripts/train_isr.py as vae_d4=latest:vae_stage2.
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import sys
from dataclasses import dataclass

from tvt.errors import ConfigError
from tvt.train.trainer import Trainer
from tvt.train.vae_transfer import VAETransferConfig, VAETransferStage
from tvt_scripts._cli import command


@dataclass
class Stage2Config(VAETransferConfig):
    mode: str = "stage2"  # this script's stage


@command(Stage2Config)
def main(cfg: Stage2Config) -> None:
    if cfg.mode != "stage2":
        raise ConfigError(f"this script trains mode=stage2, the config sets mode={cfg.mode} "
                          "(stage 1: scripts/train_vae_stage1.py; T1/T2: scripts/train_vae_ablation.py)")
    Trainer(VAETransferStage(cfg)).fit()


if __name__ == "__main__":
    sys.exit(main())
