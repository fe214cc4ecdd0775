"""Networks of the paper: VAE-D4 (vae.py), CE-UNet (ce_unet.py), LoRA (lora.py), the one-step generator (generator.py);
the ablations of Tables 5 and 7 (architectures.py, the registry; vae_skip.py S2, latent_channels.py S3,
pruned_unet.py S5); SD 2.1-base shapes (sd21.py), loading (loading.py) and the official-release converter (convert.py)."""
from .architectures import ARCHITECTURES, Architecture, get_architecture
from .ce_unet import FULLY_TRAINED_PREFIXES, build_ce_unet_from_sd, ce_unet_config, load_ce_unet, load_sd_unet
from .generator import OneStepGenerator
from .vae import AutoencoderKLD4, build_vae_d4, load_vae_d4, load_vae_d8

__all__ = ["ARCHITECTURES", "Architecture", "get_architecture", "AutoencoderKLD4", "build_vae_d4", "load_vae_d4", "load_vae_d8", "FULLY_TRAINED_PREFIXES",
           "build_ce_unet_from_sd", "ce_unet_config", "load_ce_unet", "load_sd_unet", "OneStepGenerator"]
