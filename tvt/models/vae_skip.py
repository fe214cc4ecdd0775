"""VAE-D8-SC: SD's VAE-D8 with skip connections from its encoder to its decoder (Table 7, S2).

Paper, Sec. 4.3: "S2 employs an VAE-D8 with skip connections (VAE-D8-SC) to protect the structure information."
Nothing more is given. The released skip-connected SD VAE of earlier SR work is StableSR's CFW (Decoder_Mix in
StableSR's ldm/modules/diffusionmodules/model.py): the encoder's features of the LR input at the levels between
the first and the last (``fea_list[i]``, the output of level i's ResBlocks) are added to the decoder's features at
the same resolution, after that decoder level's ResBlocks and before its upsampler: ``dec + w * fuse(enc, dec)``.
We keep that placement and the residual form; the fusion is a zero-initialised 1x1 conv of the encoder feature
instead of StableSR's RRDB block, because Table 7 gives S2 the FLOPs of S1 (2.27T both): StableSR's block would
add about 1.2T at a 512x512 image, the 1x1 convs add 0.009T. Zero init: an untrained VAE-D8-SC is SD's VAE-D8.

    encode  x (B, 3, H, W)  -> latent (B, 4, H/8, W/8); records the encoder features of ``skip_levels``
    decode  latent          -> (B, 3, H, W), adding ``skip_convs[l](feature_l)`` after decoder level l's ResBlocks

The features of the last ``encode`` are kept until the next one, so ``decode`` must follow the ``encode`` of the
same images (the one-step generator does: encode, denoise, decode); a decode with no recorded features of that size
is SD's plain decode. Tiling and slicing stay off: the decoder reads the features of the whole image.
"""
from __future__ import annotations

import logging

import torch
from diffusers import AutoencoderKL
from diffusers.configuration_utils import register_to_config
from torch import nn

from .sd21 import SD_SCALING_FACTOR

logger = logging.getLogger(__name__)


class AutoencoderKLSkip(AutoencoderKL):
    """AutoencoderKL whose decoder adds 1x1-conv projections of the encoder's level features (``skip_levels``;
    default: every level but the first and the last, StableSR's CFW levels)."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",) * 4,
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",) * 4,
        block_out_channels: tuple[int, ...] = (128, 256, 512, 512),
        layers_per_block: int = 2,
        act_fn: str = "silu",
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int = 768,
        scaling_factor: float = SD_SCALING_FACTOR,
        shift_factor: float | None = None,
        latents_mean: tuple[float] | None = None,
        latents_std: tuple[float] | None = None,
        force_upcast: bool = True,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        mid_block_add_attention: bool = True,
        skip_levels: tuple[int, ...] | None = None,
    ):
        super().__init__(in_channels=in_channels, out_channels=out_channels, down_block_types=down_block_types,
                         up_block_types=up_block_types, block_out_channels=block_out_channels,
                         layers_per_block=layers_per_block, act_fn=act_fn, latent_channels=latent_channels,
                         norm_num_groups=norm_num_groups, sample_size=sample_size, scaling_factor=scaling_factor,
                         shift_factor=shift_factor, latents_mean=latents_mean, latents_std=latents_std,
                         force_upcast=force_upcast, use_quant_conv=use_quant_conv,
                         use_post_quant_conv=use_post_quant_conv, mid_block_add_attention=mid_block_add_attention)
        n = len(block_out_channels)
        levels = tuple(range(1, n - 1)) if skip_levels is None else tuple(skip_levels)
        if not levels or not all(0 <= lv < n for lv in levels):
            raise ValueError(f"skip_levels must be levels of the {n}-level VAE, got {levels}")
        # encoder level l and decoder up block n-1-l both run at H / 2^l with block_out_channels[l] channels
        self.skip_convs = nn.ModuleDict({str(lv): nn.Conv2d(block_out_channels[lv], block_out_channels[lv], 1)
                                         for lv in levels})
        for conv in self.skip_convs.values():
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self._features: dict[int, torch.Tensor] = {}
        for lv in levels:
            self.encoder.down_blocks[lv].resnets[-1].register_forward_hook(self._recorder(lv))
            self.decoder.up_blocks[n - 1 - lv].resnets[-1].register_forward_hook(self._adder(lv))

    @classmethod
    def from_vae_d8(cls, vae: AutoencoderKL, skip_levels: tuple[int, ...] | None = None) -> "AutoencoderKLSkip":
        """The VAE-D8-SC of an SD VAE-D8: every SD weight copied, the skip convs zero (the same outputs as ``vae``)."""
        keys = ("in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels",
                "layers_per_block", "act_fn", "latent_channels", "norm_num_groups", "sample_size", "scaling_factor",
                "force_upcast", "mid_block_add_attention")
        cfg = {k: vae.config[k] for k in keys if k in vae.config}
        p = next(vae.parameters())
        with torch.device(p.device):
            sc = cls(**cfg, skip_levels=skip_levels)
        missing, unexpected = sc.load_state_dict(vae.state_dict(), strict=False)
        if unexpected or any(not k.startswith("skip_convs.") for k in missing):
            raise ValueError(f"not an SD VAE-D8 layout: missing {missing[:3]}, unexpected {unexpected[:3]}")
        return sc.to(p.dtype)

    def _recorder(self, level: int):
        def hook(module, args, output):
            self._features[level] = output
        return hook

    def _adder(self, level: int):
        def hook(module, args, output):
            feature = self._features.get(level)
            if feature is None or feature.shape[0] != output.shape[0] or feature.shape[-2:] != output.shape[-2:]:
                return output  # no features of these images recorded: SD's plain decode
            return output + self.skip_convs[str(level)](feature.to(output.dtype))
        return hook

    def encode(self, x: torch.Tensor, return_dict: bool = True):
        self._features = {}
        return super().encode(x, return_dict=return_dict)

    def enable_tiling(self, *args, **kwargs) -> None:
        logger.info("VAE-D8-SC runs untiled: its decoder reads the encoder features of the whole image")

    def enable_slicing(self) -> None:
        logger.info("VAE-D8-SC runs unsliced: its decoder reads the encoder features of the whole batch")

    @property
    def skip_levels(self) -> tuple[int, ...]:
        return tuple(int(k) for k in self.skip_convs)
