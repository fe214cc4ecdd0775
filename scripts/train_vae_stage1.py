"""Transfer VAE Training, stage 1 (paper Sec. 3.2, Eq. 1-2): the VAE-D4 decoder learns to decode the frozen
SD 2.1 VAE-D8 encoder's latent of the 2x-upsampled image (L1 + LPIPS + PatchGAN, LDM's recipe).

    python scripts/train_vae_stage1.py --config configs/vae_stage1.yaml sd_model=weights/sd21-base
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml --num_processes 8 \\
        scripts/train_vae_stage1.py --config configs/vae_stage1.yaml ...

This script trains mode=stage1 only; a config that sets another mode is refused. Next comes
scripts/train_vae_stage2.py with decoder_from=latest:vae_stage1. The Table 6 ablations T1 (mode=scratch) and
T2 (mode=align) train a VAE without transfer: scripts/train_vae_ablation.py --config configs/ablations/vae_t1.yaml (or t2).
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import sys

from tvt.errors import ConfigError
from tvt.train.trainer import Trainer
from tvt.train.vae_transfer import VAETransferConfig, VAETransferStage
from tvt_scripts._cli import command


@command(VAETransferConfig)
def main(cfg: VAETransferConfig) -> None:
    if cfg.mode != "stage1":
        raise ConfigError(f"this script trains mode=stage1, the config sets mode={cfg.mode} "
                          "(stage 2: scripts/train_vae_stage2.py; T1/T2: scripts/train_vae_ablation.py)")
    Trainer(VAETransferStage(cfg)).fit()


if __name__ == "__main__":
    sys.exit(main())
