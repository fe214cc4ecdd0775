"""Scene-text SR training (paper Sec. 4.1, Table 3): the one-step TVT recipe on RealCE's paired training set,
validated with the RealCE recognition metrics (ACC/NED).

    python scripts/prepare_data.py --realce ~/dl/RealCE          # RealCE/{train,test}/{HR,LR,annos}
    python scripts/train_stisr.py --config configs/stisr.yaml sd_model=weights/sd21-base vae_d4=latest:vae_stage2
    python scripts/eval.py --model latest:stisr --dataset RealCE --out eval/tvt-realce   # Table 3

Each run writes runs/NNN-<train.run_name>/ (val.jsonl holds psnr_y, ocr_acc, ocr_ned per validation).
"""
import tvt_scripts  # noqa: F401  first: a Ctrl-C during the imports below is one line (tvt_scripts/__init__.py)
import sys

from tvt.train.stisr import STISRConfig, STISRStage
from tvt.train.trainer import Trainer
from tvt_scripts._cli import command


@command(STISRConfig)
def main(cfg: STISRConfig) -> None:
    Trainer(STISRStage(cfg)).fit()


if __name__ == "__main__":
    sys.exit(main())
