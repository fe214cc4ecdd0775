"""Synthetic test set builder: centre HR crops + LR from the Real-ESRGAN degradation with a fixed seed.

Index = position in the sorted file list, so a rerun (any machine, any batch size) writes byte-identical PNGs.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from tqdm import tqdm

from tvt.data.datasets import expand_sources, pad_to
from tvt.data.degradation import RealESRGANDegradation, config_path, load_degradation_config
from tvt.errors import InputError
from tvt.io import atomic_path, pil_to_tensor, read_image, save_image


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) -> (3, size, size): reflect-pad if smaller, then the centre crop."""
    x = pad_to(x, size)
    _, h, w = x.shape
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, top : top + size, left : left + size]


def make_testset(hr: str | Path, out: str | Path, size: int = 512, seed: int = 0,
                 config: str | Path = "realesrgan", num: int | None = None, device: str = "cpu") -> dict:
    """Write OUT/HR/*.png, OUT/LR/*.png and OUT/manifest.json; returns the manifest."""
    files = expand_sources(hr)[:num]
    if not files:
        raise InputError(f"no images found in {hr}")
    cfg_path = config_path(config)
    cfg = load_degradation_config(cfg_path)
    degrade = RealESRGANDegradation(cfg)
    out = Path(out)
    for index, path in enumerate(tqdm(files, desc="make_testset")):
        x = center_crop(pil_to_tensor(read_image(path)), size)[None].to(device)  # (1,3,S,S)
        res = degrade(x, [index], seed)
        save_image(x[0].cpu(), out / "HR" / f"{path.stem}.png")
        save_image(res["lr"][0].cpu(), out / "LR" / f"{path.stem}.png")
    manifest = {
        "seed": seed,
        "device": str(device),  # CPU and CUDA noise streams differ
        "size": size,
        "scale": cfg.scale,
        "config": str(cfg_path),
        "config_sha256": hashlib.sha256(cfg_path.read_bytes()).hexdigest(),
        "sources": [{"index": i, "file": str(p), "name": f"{p.stem}.png"} for i, p in enumerate(files)],
    }
    with atomic_path(out / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
