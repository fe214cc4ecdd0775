"""VAE evaluation (Table 1 protocol): reconstruction PSNR/SSIM/LPIPS and latent alignment to VAE-D8.

Alignment (our addition): relative L2 ||z4 - z8|| / ||z8|| and cosine between the D4 latent of x and the
D8 latent of up2(x) (bicubic): TVT keeps them close, a D4 trained without transfer (T1) does not.
lin_r2 (our addition): how much of the D8 latent a per-pixel affine map of the D4 latent explains; a D4 can carry
the same information in other coordinates (high lin_r2) without being the same latent (high rel_l2).
Cross-decoding (our addition, what the SD UNet actually relies on, Sec. 3.1):
  psnr_y_d4dec_z8  the D4 decoder reads the D8 latent of up2(x)        (latents coming from the UNet; stage 1)
  psnr_y_d8dec_z4  the D8 decoder reads the D4 latent of x, then 2x down (latents fed to the UNet; stage 2)
  psnr_y_d8dec_z8  (VAE-D8 row) the D8 decoder reads its own latent of up2(x), then 2x down: psnr_y_d8dec_z4's ceiling
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io import list_images, pil_to_tensor, read_image
from ..models.sd21 import downscale_factor
from .image import psnr_y

def latent_alignment(z4: torch.Tensor, z8: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image relative L2 and cosine similarity of two (B, 4, h, w) latents."""
    a, b = z4.flatten(1).float(), z8.flatten(1).float()
    return {"rel_l2": (a - b).norm(dim=1) / b.norm(dim=1).clamp_min(1e-8), "cosine": F.cosine_similarity(a, b, dim=1)}


def latent_linear_r2(z4: torch.Tensor, z8: torch.Tensor) -> float:
    """R^2 of the least-squares per-pixel affine map z4 -> z8 (channels to channels), pooled over all pixels."""
    a = z4.permute(1, 0, 2, 3).flatten(1).double()
    b = z8.permute(1, 0, 2, 3).flatten(1).double()
    x = torch.cat([a, torch.ones(1, a.shape[1], dtype=a.dtype)]).T
    fit = x @ torch.linalg.lstsq(x, b.T).solution
    return float(1 - (fit - b.T).pow(2).sum() / (b.T - b.T.mean(0)).pow(2).sum())


def load_eval_images(data: str | Path, crop: int, num: int | None = None) -> torch.Tensor:
    """Center crops (N, 3, crop, crop) in [0, 1] of the first ``num`` images of a folder."""
    files = list_images(data)[:num] if num else list_images(data)
    if not files:
        raise InputError(f"no images in {data}")
    out = []
    for f in files:
        x = pil_to_tensor(read_image(f))
        h, w = x.shape[-2:]
        if min(h, w) < crop:
            raise InputError(f"{f}: {w}x{h} is smaller than the crop {crop}")
        t, l = (h - crop) // 2, (w - crop) // 2
        out.append(x[:, t:t + crop, l:l + crop])
    return torch.stack(out)


@torch.no_grad()
def evaluate_vae(vae, images: torch.Tensor, vae_d8=None, lpips=None, ssim=None, batch_size: int = 4) -> dict[str, float]:
    """Reconstruction metrics of ``vae`` on ``images`` ([0, 1]); alignment to ``vae_d8`` when given (4x VAEs)."""
    device = next(vae.parameters()).device
    res: dict[str, list] = {k: [] for k in ("psnr_y", "ssim_y", "lpips", "rel_l2", "cosine", "psnr_y_d4dec_z8",
                                             "psnr_y_d8dec_z4", "psnr_y_d8dec_z8")}
    z4s, z8s = [], []
    factor = downscale_factor(vae.config)
    for i in range(0, len(images), batch_size):
        gt = images[i:i + batch_size].to(device)
        x = gt * 2 - 1
        z = vae.encode(x).latent_dist.mode()
        pred = ((vae.decode(z).sample + 1) / 2).clamp(0, 1)
        res["psnr_y"] += psnr_y(pred, gt).tolist()
        if ssim is not None:
            res["ssim_y"] += ssim(pred, gt).flatten().tolist()
        if lpips is not None:
            res["lpips"] += [float(lpips(pred[j:j + 1] * 2 - 1, x[j:j + 1])) for j in range(len(x))]
        if vae_d8 is not None and factor == 4:
            up2 = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)
            z8 = vae_d8.encode(up2).latent_dist.mode()  # (B, 4, H/4, W/4): the D4 latent's size
            al = latent_alignment(z, z8)
            res["rel_l2"] += al["rel_l2"].tolist()
            res["cosine"] += al["cosine"].tolist()
            res["psnr_y_d4dec_z8"] += psnr_y(((vae.decode(z8).sample + 1) / 2).clamp(0, 1), gt).tolist()
            d8_rec = F.interpolate(vae_d8.decode(z).sample, scale_factor=0.5, mode="bicubic", antialias=True)
            res["psnr_y_d8dec_z4"] += psnr_y(((d8_rec + 1) / 2).clamp(0, 1), gt).tolist()
            z4s.append(z.cpu())
            z8s.append(z8.cpu())
        if vae_d8 is None and factor == 8:  # the D8's own up2 round trip: the ceiling of psnr_y_d8dec_z4
            up2 = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)
            rec = vae.decode(vae.encode(up2).latent_dist.mode()).sample
            rec = F.interpolate(rec, scale_factor=0.5, mode="bicubic", antialias=True)
            res["psnr_y_d8dec_z8"] += psnr_y(((rec + 1) / 2).clamp(0, 1), gt).tolist()
    out = {k: sum(v) / len(v) for k, v in res.items() if v}
    if z4s:
        out["lin_r2"] = latent_linear_r2(torch.cat(z4s), torch.cat(z8s))
    return out


def make_ssim_y():
    """pyiqa's SSIM with the published protocol (Y of YCbCr, no crop)."""
    import pyiqa

    return pyiqa.create_metric("ssim", test_y_channel=True, color_space="ycbcr", device="cpu", as_loss=False)
