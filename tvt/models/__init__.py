"""Networks of the paper: VAE-D4 (vae.py), CE-UNet (ce_unet.py), LoRA (lora.py), the one-step generator (generator.py);
SD 2.1-base shapes (sd21.py), loading (loading.py) and the official-release converter (convert.py)."""
from .ce_unet import FULLY_TRAINED_PREFIXES, build_ce_unet_from_sd, ce_unet_config, load_ce_unet, load_sd_unet
from .generator import OneStepGenerator
from .vae import AutoencoderKLD4, build_vae_d4, load_vae_d4, load_vae_d8

__all__ = ["AutoencoderKLD4", "build_vae_d4", "load_vae_d4", "load_vae_d8", "FULLY_TRAINED_PREFIXES",
           "build_ce_unet_from_sd", "ce_unet_config", "load_ce_unet", "load_sd_unet", "OneStepGenerator"]
