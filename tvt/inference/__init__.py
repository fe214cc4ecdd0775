"""Inference for images of any size: TVT (VAE-D4 + CE-UNet), the OSEDiff architecture (VAE-D8 + SD UNet) and
bicubic, behind one API.

    resize      bicubic to the output size, padding to the stride, the upscale limit
    base        what every pipeline shares (input handling, size limits); BicubicPipeline
    pipeline    TVTPipeline: prompt, encode, one-step denoise, decode, colour fix
    tiling      latent and VAE tile sizes per call; the fast path's MAC-fitted bounded tiles
    fast        the opt-in fast path (torch.compile, channels_last, SDPA order, one dtype)
    pretrained  what from_pretrained loads: export, official release, SD 2.1 folder
    folder      super_resolve_folder: a pipeline over a folder, batched, reading/writing in threads
"""
from .base import BicubicPipeline, TVTPipelineOutput
from .folder import FolderResult, super_resolve_folder
from .pipeline import DTYPES, TVTPipeline

__all__ = ["TVTPipeline", "BicubicPipeline", "TVTPipelineOutput", "FolderResult", "super_resolve_folder", "DTYPES"]
