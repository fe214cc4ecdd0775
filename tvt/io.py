"""Image and file I/O shared by datasets, the pipeline, metrics and scripts.

Images come in as paths, PIL images, arrays or tensors and leave as (3, H, W) float tensors in [0, 1]; every
bit depth and colour mode is converted in one place (``to_unit_range``, ``to_rgb``). Files are read by one
function, ``read_image``: the size a file declares is checked before it is decoded (``MAX_IMAGE_PIXELS``), a
camera's EXIF orientation is applied (so ``image_size`` gives the upright size too), and TIFFs that PIL cannot
decode (float32 RGB) are read with tifffile. All writes are atomic (temp file or folder beside the target, then
rename) so an interrupted run never leaves a half-written checkpoint, export or image behind, and what they
write has the permissions of a normal write (``normal_permissions``).
"""
from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
TIFF_EXTENSIONS = (".tif", ".tiff")
# Declared pixel counts above this are refused before decoding: 8192 x 8192, the pipeline's largest output. A
# PNG of a few hundred KB can declare 100 MP and take gigabytes to decode.
MAX_IMAGE_PIXELS = 8192 * 8192
ORIENTATION = 0x0112  # the EXIF tag; values 5-8 swap width and height


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
        normal_permissions(tmp)  # mkstemp makes 0600 files; a normal write would give 0644
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
        normal_permissions(tmp)  # mkdtemp makes 0700 folders, the safetensors library 0600 files
        old = path.with_name(f".{path.name}.old-{os.getpid()}") if path.exists() else None
        if old is not None:
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def output_folder(path: str | Path) -> Iterator[Path]:
    """Create the folder ``path`` (and its missing parents) for a run's outputs; the folders made here are removed
    again if they are empty when the block ends (nothing written, a failed or interrupted run): no empty output
    folder is left behind. A folder that existed before is never removed."""
    path = Path(path)
    made = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    finally:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # not empty: the run wrote there (or someone else did)
                break


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def normal_permissions(path: str | Path) -> None:
    """Give a file, or a folder and everything in it, the modes a plain write gives under the umask (0644 / 0755
    usually): mkstemp, mkdtemp and the safetensors library create theirs readable by the owner alone."""
    path = Path(path)
    umask = _umask()
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


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


def read_image(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """Read an image file (opened once) as 8-bit RGB (``to_rgb``), upright (its EXIF orientation applied).

    ImageReadError naming the file if it does not decode, or if it declares more than ``max_pixels`` (default
    ``MAX_IMAGE_PIXELS``): checked from the header, before any decoding. TIFFs PIL cannot decode (float32 RGB)
    are read with tifffile; their float values must lie in [0, 1] as for every float image (``to_unit_range``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with _open(path) as img:
            _check_pixels(path, img.size, max_pixels)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # a camera's Orientation tag: the pixels made upright
            return to_rgb(img, path.name)
    except UnidentifiedImageError as err:
        if path.suffix.lower() in TIFF_EXTENSIONS:
            return _read_tiff(path, max_pixels)
        raise ImageReadError(f"cannot read image {path}: {err}") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file as ``read_image`` returns it (upright), from its header alone."""
    path = Path(path)
    try:
        with _open(path) as img:
            w, h = img.size
            swap = img.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)
            return (h, w) if swap else (w, h)
    except UnidentifiedImageError as err:
        if path.suffix.lower() in TIFF_EXTENSIONS:
            return _tiff_size(path)
        raise ImageReadError(f"cannot read image {path}: {err}") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from None


def _open(path: Path) -> Image.Image:
    """PIL's lazy open: the header is read, the pixels are not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower, limit is checked instead
        return Image.open(path)


def _check_pixels(path: Path, size: tuple[int, int], max_pixels: int | None) -> None:
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if size[0] * size[1] > limit:
        raise ImageReadError(f"{path} declares {size[0]}x{size[1]} pixels ({size[0] * size[1] / 1e6:.1f} MP), more "
                             f"than the {limit / 1e6:.1f} MP limit (tvt.io.MAX_IMAGE_PIXELS): not decoded")


def _tiff_size(path: Path) -> tuple[int, int]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            return int(page.imagewidth), int(page.imagelength)
    except (tifffile.TiffFileError, OSError, ValueError, IndexError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from None


def _read_tiff(path: Path, max_pixels: int | None) -> Image.Image:
    """A TIFF PIL cannot decode (float32 or 3-channel float, planar...): tifffile, then ``to_unit_range``."""
    import tifffile

    _check_pixels(path, _tiff_size(path), max_pixels)
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            pixels = page.asarray()
            axes = page.axes
    except (tifffile.TiffFileError, OSError, ValueError, IndexError) as err:
        raise ImageReadError(f"cannot read image {path}: {err}") from None
    if axes.startswith("S") and pixels.ndim == 3:  # planar: samples first -> (H, W, S)
        pixels = np.moveaxis(pixels, 0, -1)
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[-1] not in (1, 3, 4)):
        raise ImageReadError(f"{path}: unsupported TIFF layout {axes} {pixels.shape} (expected one image with 1, 3 "
                             "or 4 samples per pixel)")
    rgb = np.round(to_unit_range(pixels, path.name) * 255).astype(np.uint8)
    if rgb.ndim == 3 and rgb.shape[-1] != 3:
        if rgb.shape[-1] == 4:
            logger.info("%s: 4-sample TIFF, alpha dropped (the colours are used as they are)", path.name)
        rgb = rgb[..., :3] if rgb.shape[-1] == 4 else rgb[..., 0]
    return Image.fromarray(rgb).convert("RGB")


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
