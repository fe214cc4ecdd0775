"""Image and file I/O shared by datasets, the pipeline, metrics and scripts.

Images come in as paths, PIL images, arrays or tensors and leave as (3, H, W) float tensors in [0, 1]; every
bit depth and colour mode is converted in one place (``to_unit_range``, ``to_rgb``). All writes are atomic
(temp file or folder beside the target, then rename) so an interrupted run never leaves a half-written
checkpoint, export or image behind.
"""
from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import InputError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageReadError(InputError):
    """An image cannot be read: the file does not decode, or its values are not an image's."""


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


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temp folder beside ``path``; if the block succeeds it replaces ``path`` (an existing one is
    moved aside first and removed after), else it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; mkdir would give 0755
        old = path.with_name(f".{path.name}.old-{os.getpid()}") if path.exists() else None
        if old is not None:
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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


# ---------------------------------------------------------------------------------------------
# Any image -> (3, H, W) float in [0, 1]
# ---------------------------------------------------------------------------------------------
# Integer pixels -> the value of white. A 16-bit image is 16-bit whatever its largest value; PIL opens some
# 16-bit files as 32-bit "I", which we read as 16-bit too.
_WHITE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.int32): 65535.0}


def to_unit_range(pixels: np.ndarray, name: str = "image") -> np.ndarray:
    """Integer or float pixels -> float32 in [0, 1]: the one bit-depth conversion. Integers are divided by
    their type's white; floats (float TIFFs, arrays) must already lie in [0, 1]."""
    if pixels.dtype in _WHITE:
        return np.clip(pixels.astype(np.float32) / _WHITE[pixels.dtype], 0, 1)
    if pixels.dtype.kind != "f":
        raise ImageReadError(f"{name}: unsupported pixel type {pixels.dtype} (expected 8/16-bit integers or floats)")
    lo, hi = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
    if not (np.isfinite(pixels).all() and 0 <= lo and hi <= 1):
        raise ImageReadError(f"{name}: float pixel values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]")
    return pixels.astype(np.float32)


def to_rgb(img: Image.Image, name: str = "image") -> Image.Image:
    """Any PIL image -> 8-bit RGB: 16-bit and float grayscale through ``to_unit_range``, other modes as PIL
    converts them. Alpha is dropped, not composited (the colours under transparent pixels are kept): said in the log."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = Image.fromarray(np.round(to_unit_range(np.asarray(img), name) * 255).astype(np.uint8))
    elif "A" in img.mode or "transparency" in img.info:
        logger.info("%s: %s image, alpha dropped (the colours are used as they are)", name, img.mode)
    return img.convert("RGB")


def read_image(path: str | Path) -> Image.Image:
    """Read an image file (opened once) as 8-bit RGB (``to_rgb``); ImageReadError naming the file if it does not decode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img, path.name)
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from None


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image (any mode, ``to_rgb``) -> float tensor (3, H, W) in [0, 1]."""
    arr = np.asarray(to_rgb(img), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def image_to_tensor(image) -> torch.Tensor:
    """A path, PIL image, (H, W) / (H, W, C) array or (H, W) / (C, H, W) tensor -> (3, H, W) float in [0, 1].

    Arrays go through ``to_unit_range``; tensors must be floats in [0, 1] (clamped). One channel is repeated,
    a fourth (alpha) dropped.
    """
    if isinstance(image, (str, Path)):
        return pil_to_tensor(read_image(image))
    if isinstance(image, Image.Image):
        return pil_to_tensor(image)
    if isinstance(image, np.ndarray):
        t = torch.from_numpy(to_unit_range(image, "array"))
        t = t[None] if t.ndim == 2 else t.permute(2, 0, 1) if t.ndim == 3 else t
    elif isinstance(image, torch.Tensor):
        t = image.detach().float().clamp(0, 1)
        t = t[None] if t.ndim == 2 else t
    else:
        raise InputError(f"unsupported image type {type(image).__name__}: give a path, PIL image, array or tensor")
    if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
        raise InputError(f"expected an image with 1, 3 or 4 channels, got shape {tuple(image.shape)}")
    if t.shape[0] == 4:
        logger.info("4-channel image: alpha dropped (the colours are used as they are)")
    return t[:3].expand(3, -1, -1).contiguous()


def to_image_tensors(images) -> list[torch.Tensor]:
    """One image (see ``image_to_tensor``), a (B, C, H, W) tensor or a list of images -> list of (3, h, w)."""
    if isinstance(images, (str, Path, Image.Image, np.ndarray)) or (isinstance(images, torch.Tensor) and images.ndim < 4):
        images = [images]
    return [image_to_tensor(im) for im in images]


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """Float tensor (3, H, W) in [0, 1] -> PIL RGB (rounded, clamped)."""
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got {tuple(x.shape)}")
    arr = (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


def format_images(images: list[torch.Tensor], output_type: str):
    """list of (3, H, W) in [0, 1] -> PIL images ("pil"), one (B, H, W, 3) array ("np") or (B, 3, H, W) tensor
    ("pt"); "np" and "pt" give lists when the sizes differ."""
    same = len({tuple(o.shape) for o in images}) == 1
    if output_type == "pil":
        return [tensor_to_pil(o) for o in images]
    if output_type == "pt":
        return torch.stack(images) if same else images
    if output_type == "np":
        arrs = [o.permute(1, 2, 0).cpu().numpy() for o in images]
        return np.stack(arrs) if same else arrs
    raise InputError(f"output_type must be 'pil', 'np' or 'pt', got '{output_type}'")


def save_image(img: Image.Image | torch.Tensor, path: str | Path) -> None:
    """Save atomically; the format follows the suffix of ``path`` (PNG recommended)."""
    if isinstance(img, torch.Tensor):
        img = tensor_to_pil(img)
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
