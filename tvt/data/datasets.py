"""Datasets: HR crops for online degradation (training) and HR/LR pairs (evaluation).

HR crops are drawn from a generator seeded by (seed, epoch, index), so a DataLoader gives the same crops whatever
the number of workers; in training, the LR of each crop is made right after it, in the same worker, by the stage's
per-sample transform (``tvt.data.degradation.DegradeSample``, seeded by the sample's position).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from tvt.data.mix import Source, SourceMix, expand_sized, image_size, parse_sources
from tvt.io import ImageReadError, list_images, pil_to_tensor, read_image
from tvt.io import image_size as io_image_size

log = logging.getLogger(__name__)
SMALL_POLICIES = ("pad", "resize", "skip")


def expand_sources(sources: str | Path | Sequence[str | Path]) -> list[Path]:
    """Folders, single images, globs and ``.txt`` file lists (one path a line, relative to the list's folder,
    optionally followed by ``<TAB>width<TAB>height``)."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    files: list[Path] = []
    for src in sources:
        src = Path(src)
        if src.suffix.lower() == ".txt" and src.is_file():
            for line in src.read_text().splitlines():
                line = line.split("\t")[0].strip()
                if line and not line.startswith("#"):
                    p = Path(line)
                    files.append(p if p.is_absolute() else src.parent / p)
        else:
            files.extend(list_images(src))
    return files


def pad_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect-pad (3, H, W) on the bottom/right to at least size x size (repeated: reflect needs pad < side)."""
    while x.shape[1] < size or x.shape[2] < size:
        ph, pw = max(size - x.shape[1], 0), max(size - x.shape[2], 0)
        mode = "reflect" if min(x.shape[1:]) > 1 else "replicate"
        if mode == "reflect":
            ph, pw = min(ph, x.shape[1] - 1), min(pw, x.shape[2] - 1)
        x = F.pad(x[None], (0, pw, 0, ph), mode=mode)[0]
    return x


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) -> short side ``size``, aspect kept: LDM's ``SmallestMaxSize(size, cv2.INTER_AREA)``
    (ldm/data/imagenet.py), which its autoencoder data applies instead of padding."""
    import cv2

    _, h, w = x.shape
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    out = cv2.resize(x.permute(1, 2, 0).numpy(), (nw, nh), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(out).permute(2, 0, 1).clamp(0, 1).contiguous()


class HRImageDataset(Dataset):
    """``crop_size`` HR crops of a mix of sources (``tvt.data.mix``), with optional flips / 90-degree transposes.

    Sample k of an epoch is one (image, window) of ``SourceMix``: a window of a windowed source (the default:
    every crop_size window at stride 64, the official pre-cut data), an image resized whole (``resize: true``),
    or an image cropped at a random place (``stride: null``). ``len`` is the samples of one epoch; ``mix.shares()``
    and ``mix.describe()`` say how much of it each source is.

    item: dict(hr=(3, S, S) float in [0, 1], index=int, path=str). Images of a ``stride: null`` source smaller
    than the crop are reflect-padded (``small_policy="pad"``), resized so their short side is crop_size
    (``"resize"``, LDM's ``SmallestMaxSize`` with INTER_AREA) or dropped when the dataset is built (``"skip"``; one
    warning with the count). Unreadable files are skipped with a warning naming them and another index is returned.
    Flips default off: each stage passes its own (official ISR: horizontal flip; LDM's autoencoder data: none).
    """

    def __init__(
        self,
        sources,
        crop_size: int = 512,
        use_flip: bool = False,
        use_rot: bool = False,
        small_policy: str = "pad",
        seed: int = 0,
    ):
        if small_policy not in SMALL_POLICIES:
            raise ValueError(f"small_policy must be one of {SMALL_POLICIES}, got {small_policy!r}")
        srcs = parse_sources(sources)
        self.crop_size, self.use_flip, self.use_rot = crop_size, use_flip, use_rot
        self.small_policy, self.seed, self.epoch = small_policy, seed, 0
        self.num_small = 0
        listings = {i: self._kept(s) for i, s in enumerate(srcs) if small_policy == "skip" and not (s.windowed or s.resize)}
        if self.num_small:
            log.warning("skipped %d images smaller than crop_size=%d", self.num_small, crop_size)
        self.mix = SourceMix(srcs, crop_size, listings)
        self.paths = self.mix.paths
        if not len(self.mix):
            raise ValueError(f"no images found in {[s.path for s in srcs]} "
                             f"(none with a {crop_size}-px window)")
        self.bad: set[int] = set()

    def _kept(self, src: Source) -> list:
        """The images of a ``stride: null`` source at least crop_size on both sides (``small_policy="skip"``)."""
        kept = []
        for path, size in expand_sized(src.path):
            size = size or image_size(path)
            if size is not None and min(size) < self.crop_size:
                self.num_small += 1
            else:
                kept.append((path, size))
        if not kept:
            raise ValueError(f"all images of {src.path} are smaller than crop_size={self.crop_size}")
        return kept

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.mix)

    def _load(self, image: int) -> torch.Tensor | None:
        path = self.paths[image]
        try:
            img = read_image(path)
            if self.mix.sources[self.mix.source_of[image]].resize:
                from PIL import Image

                img = img.resize((self.crop_size, self.crop_size), Image.LANCZOS)
            return pil_to_tensor(img)  # (3, H, W)
        except (ImageReadError, FileNotFoundError) as err:
            if image not in self.bad:
                log.warning("skipping unreadable image %s: %s", path, err)
                self.bad.add(image)
            return None

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, window = self.mix.locate(index, self.epoch)
        hr = None if image in self.bad else self._load(image)
        for _ in range(len(self)):  # fall back to other (deterministic) samples; never crash mid-epoch
            if hr is not None:
                break
            image, window = self.mix.locate(int(rng.integers(len(self))), self.epoch)
            hr = None if image in self.bad else self._load(image)
        if hr is None:
            raise RuntimeError("no readable image found in the dataset")
        s = self.crop_size
        _, h, w = hr.shape
        if h < s or w < s:
            if not self.num_small:
                log.warning("image %s (%dx%d) is smaller than crop_size=%d; %s", self.paths[image], w, h, s,
                            "resizing" if self.small_policy == "resize" else "reflect-padding")
            self.num_small += 1
            hr = resize_short_side(hr, s) if self.small_policy == "resize" else pad_to(hr, s)
            _, h, w = hr.shape
        if window is None:
            top, left = int(rng.integers(h - s + 1)), int(rng.integers(w - s + 1))
        else:  # the window's place; clamped if the file changed size since it was listed
            top, left = min(window[0], h - s), min(window[1], w - s)
        hr = hr[:, top : top + s, left : left + s]
        if self.use_flip and rng.uniform() < 0.5:
            hr = hr.flip(-1)
        if self.use_rot:
            if rng.uniform() < 0.5:
                hr = hr.flip(-2)
            if rng.uniform() < 0.5:
                hr = hr.transpose(-1, -2)
        return {"hr": hr.contiguous(), "index": index, "path": str(self.paths[image])}


class PairedImageDataset(Dataset):
    """HR/LR pairs matched by file stem (e.g. RealSR/DRealSR test sets). item: dict(hr, lr, name).

    Mismatched names, or LR size != HR size / scale, raise ValueError listing them.
    """

    def __init__(self, hr_dir: str | Path, lr_dir: str | Path, scale: int = 4):
        hr = {p.stem: p for p in list_images(hr_dir)}
        lr = {p.stem: p for p in list_images(lr_dir)}
        only_hr, only_lr = sorted(hr.keys() - lr.keys()), sorted(lr.keys() - hr.keys())
        if only_hr or only_lr:
            raise ValueError(f"HR/LR names do not match: only in {hr_dir}: {only_hr}; only in {lr_dir}: {only_lr}")
        if not hr:
            raise ValueError(f"no images in {hr_dir}")
        bad = []
        for name in sorted(hr):
            a, b = io_image_size(hr[name]), io_image_size(lr[name])  # upright, as read_image reads them
            if a != (b[0] * scale, b[1] * scale):
                bad.append(f"{name}: HR {a[0]}x{a[1]} vs LR {b[0]}x{b[1]} (x{scale})")
        if bad:
            raise ValueError("HR/LR sizes do not match the scale: " + "; ".join(bad))
        self.names = sorted(hr)
        self.hr_paths, self.lr_paths, self.scale = hr, lr, scale

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        name = self.names[index]
        return {
            "hr": pil_to_tensor(read_image(self.hr_paths[name])),
            "lr": pil_to_tensor(read_image(self.lr_paths[name])),
            "name": name,
        }


__all__ = ["HRImageDataset", "PairedImageDataset", "expand_sources", "pad_to", "resize_short_side"]
