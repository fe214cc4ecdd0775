"""Transfer VAE Training, stage2: python scripts/train_vae_stage2.py --config configs/vae_stage2.yaml [key=value ...]"""
from tvt.train.core import main
from tvt.train.vae_transfer import VAETransferStage

if __name__ == "__main__":
    main(VAETransferStage)
