"""Image and file I/O shared by datasets, the pipeline, metrics and scripts.

All writes are atomic (temp file in the same folder, then rename) so an interrupted run never
leaves a half-written checkpoint or image behind.
"""
from __future__ import annotations

import glob
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(InputError):
    """A file could not be read as an image."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; a normal write would give 0644
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(source: str | Path) -> list[Path]:
    """Image files from a file, a folder (non-recursive, any common extension) or a glob, sorted."""
    source = str(source)
    if any(ch in source for ch in "*?["):
        files = [Path(p) for p in glob.glob(source, recursive=True)]
    elif Path(source).is_dir():
        files = [p for p in Path(source).iterdir() if p.is_file()]
    elif Path(source).is_file():
        return [Path(source)]
    else:
        raise FileNotFoundError(f"input not found: {source}")
    return sorted(p for p in files if is_image_file(p))


def read_image(path: str | Path) -> Image.Image:
    """Read an image as 8-bit RGB. Grayscale, RGBA (alpha dropped), palette and 16-bit inputs are converted."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                peak = 65535.0 if arr.max() > 255 else 255.0
                img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from None


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor (3, H, W) in [0, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """Float tensor (3, H, W) in [0, 1] -> PIL RGB (rounded, clamped)."""
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got {tuple(x.shape)}")
    arr = (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


def save_image(img: Image.Image | torch.Tensor, path: str | Path) -> None:
    """Save atomically; the format follows the suffix of ``path`` (PNG recommended)."""
    if isinstance(img, torch.Tensor):
        img = tensor_to_pil(img)
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
