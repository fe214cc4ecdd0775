"""Networks of the paper: VAE-D4 (vae.py), CE-UNet (ce_unet.py), LoRA helpers (lora.py)."""
from .vae import AutoencoderKLD4, build_vae_d4, load_vae_d4, load_vae_d8
