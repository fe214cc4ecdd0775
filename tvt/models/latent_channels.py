"""The eight-channel latent of VAE-D8C8 (Table 7, S3) and the SD UNet that reads it.

Paper, Sec. 4.3: "In S3, we train a downsampled VAE with eight channels of latent features (VAE-D8C8), whose latent
space is aligned with VAE-D8 by interpolating the number of channels in VAE-D8." We read "interpolating the number
of channels" literally: the D8C8 latent of an image is the VAE-D8 latent linearly interpolated along the channel
axis from 4 to 8 channels (``channel_interpolation``: F.interpolate, linear, align_corners=True),

    z8 = A z4,    A (8, 4),    and back    z4 = A^+ z8    (A^+ the pseudo-inverse, A^+ A = I)

The transfer stages train the D8C8 decoder on A z4 (stage 1) and its encoder under that decoder (stage 2), as TVT
does for VAE-D4. The UNet reads 8 channels through SD's UNet with conv_in / conv_out widened so that, before any
training, UNet8(A z) = A UNet4(z): conv_in's kernel W A^+, conv_out's kernel A W and bias A b. The VSD loss scores
the x0 latent with SD's 4-channel UNets after A^+ (``narrow_latent``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel

SD_LATENT_CHANNELS = 4
C8_LATENT_CHANNELS = 8
C8_FULLY_TRAINED_PREFIXES = ("conv_in", "conv_out")  # widened: no SD weights of their shape, trained in full


def channel_interpolation(channels: int, base: int = SD_LATENT_CHANNELS) -> torch.Tensor:
    """A (channels, base): column c is the linear interpolation of the c-th unit vector to ``channels`` entries."""
    eye = torch.eye(base, dtype=torch.float64, device="cpu")[:, None, :]  # (base, 1, base): one signal per unit vector
    return F.interpolate(eye, size=channels, mode="linear", align_corners=True)[:, 0, :].T.contiguous()


def widen_latent(z: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, 4, h, w) -> (B, channels, h, w): A z."""
    a = channel_interpolation(channels, z.shape[1]).to(z.device, z.dtype)
    return torch.einsum("oc,bchw->bohw", a, z)


def narrow_latent(z: torch.Tensor, base: int = SD_LATENT_CHANNELS) -> torch.Tensor:
    """(B, C, h, w) -> (B, 4, h, w): A^+ z, the inverse of ``widen_latent`` on its range; identity for 4 channels."""
    if z.shape[1] == base:
        return z
    pinv = torch.linalg.pinv(channel_interpolation(z.shape[1], base)).to(z.device, z.dtype)
    return torch.einsum("co,bohw->bchw", pinv, z)


def c8_unet_config(sd_unet_config: dict, channels: int = C8_LATENT_CHANNELS) -> dict:
    cfg = {k: v for k, v in dict(sd_unet_config).items() if not k.startswith("_")}
    return {**cfg, "in_channels": channels, "out_channels": channels}


def build_c8_unet_from_sd(sd_unet: UNet2DConditionModel, channels: int = C8_LATENT_CHANNELS) -> UNet2DConditionModel:
    """SD's UNet reading and predicting ``channels``-channel latents: UNet8(A z) = A UNet4(z) at initialisation.

    Every other weight is SD's; works on the meta device (FLOP counts)."""
    p = next(sd_unet.parameters())
    with torch.device(p.device):
        unet = UNet2DConditionModel(**c8_unet_config(sd_unet.config, channels))
    a = channel_interpolation(channels, sd_unet.config.in_channels)
    pinv = torch.linalg.pinv(a)
    sd = sd_unet.state_dict()
    widened = {
        "conv_in.weight": lambda w: torch.einsum("oikl,ij->ojkl", w.double(), pinv.to(w.device)),
        "conv_out.weight": lambda w: torch.einsum("ji,iokl->jokl", a.to(w.device), w.double()),
        "conv_out.bias": lambda b: a.to(b.device) @ b.double(),
    }
    with torch.no_grad():
        for key, target in unet.state_dict().items():
            value = widened[key](sd[key]) if key in widened else sd[key]
            target.copy_(value.to(target.dtype))
    return unet.to(p.dtype)
