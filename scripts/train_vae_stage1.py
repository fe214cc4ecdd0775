"""Transfer VAE Training, stage1: python scripts/train_vae_stage1.py --config configs/vae_stage1.yaml [key=value ...]"""
from tvt.train.core import main
from tvt.train.vae_transfer import VAETransferStage

if __name__ == "__main__":
    main(VAETransferStage)
