"""Stable Diffusion 2.1-base, the model TVT starts from (Sec. 3.1): its hub id and the shapes of its parts.

The configs hold the fields that matter of stabilityai/stable-diffusion-2-1-base's unet/config.json,
vae/config.json, text_encoder/config.json and scheduler/scheduler_config.json, so full-size networks can be
built without a download (FLOP counts, latency benchmarks) and tiny test models keep SD's layout.
"""
from __future__ import annotations

SD21_BASE = "stabilityai/stable-diffusion-2-1-base"
SD_SCALING_FACTOR = 0.18215  # SD 2.1's latent scale; the D4 latent lives in the same space (Sec. 3.1)

SD21_UNET_CONFIG = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True, norm_num_groups=32,
)
SD21_VAE_CONFIG = dict(  # VAE-D8
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4, norm_num_groups=32,
    sample_size=768, scaling_factor=SD_SCALING_FACTOR,
)
SD21_TEXT_CONFIG = dict(  # OpenCLIP ViT-H text tower as SD 2.1 ships it (23 layers: the penultimate one is used)
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
    max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
)
SD21_SCHEDULER_CONFIG = dict(  # DDPMScheduler, epsilon prediction
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    prediction_type="epsilon", clip_sample=False, steps_offset=1, trained_betas=None,
)


def downscale_factor(config) -> int:
    """Spatial downsampling of a diffusers VAE or UNet: one factor 2 between consecutive levels.

    VAE-D8 8, VAE-D4 4 (image -> latent); SD UNet 8, CE-UNet 16 (latent -> deepest level: latent sides must be
    multiples of it). ``config``: a model's ``config`` or a config dict.
    """
    channels = config["block_out_channels"] if isinstance(config, dict) else config.block_out_channels
    return 2 ** (len(channels) - 1)
