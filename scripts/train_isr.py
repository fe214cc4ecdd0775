"""One-step TVT Real-ISR training (paper Sec. 3.3): CE-UNet LoRA + replicated levels on VAE-D4; L2 + LPIPS + VSD.

    python scripts/train_isr.py --config configs/isr.yaml sd_model=weights/sd21-base vae_d4=latest:vae_stage2
    accelerate launch --config_file configs/accelerate/multi_gpu.yaml --num_processes 4 \\
        scripts/train_isr.py --config configs/isr.yaml ...

vae_d4: a VAE-D4 folder, or latest:vae_stage2 for the export of the newest finished runs/NNN-vae_stage2.
Each run writes runs/NNN-<train.run_name>/ (printed when it starts and ends); train.resume=latest continues the
newest one from its last checkpoint. Table 7's S1 / S4: architecture=osediff / architecture=s4.
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import sys

from tvt.train.trainer import Trainer
from tvt.train.isr import ISRConfig, ISRStage
from tvt_scripts._cli import command


@command(ISRConfig)
def main(cfg: ISRConfig) -> None:
    Trainer(ISRStage(cfg)).fit()


if __name__ == "__main__":
    sys.exit(main())
