"""Datasets: HR crops for online degradation (training) and HR/LR pairs (evaluation).

HR crops are drawn from a generator seeded by (seed, epoch, index), so a DataLoader gives the same crops whatever
the number of workers; in training, the LR of each crop is made right after it, in the same worker, by the stage's
per-sample transform (``tvt.data.degradation.DegradeSample``, seeded by the sample's position).
"""
from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from tvt.io import ImageReadError, list_images, pil_to_tensor, read_image

log = logging.getLogger(__name__)


def expand_sources(sources: str | Path | Sequence[str | Path]) -> list[Path]:
    """Folders, single images, globs and ``.txt`` file lists (one path a line, relative to the list's folder)."""
    if isinstance(sources, (str, Path)):
        sources = [sources]
    files: list[Path] = []
    for src in sources:
        src = Path(src)
        if src.suffix.lower() == ".txt" and src.is_file():
            for line in src.read_text().splitlines():
                line = line.strip()
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


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy/random from torch's per-worker seed (our crops do not need it,
    but third-party transforms that use the global RNGs then differ across workers and stay reproducible)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class HRImageDataset(Dataset):
    """Random ``crop_size`` HR crops with optional flip / 90-degree rotation.

    Images from ``resize_sources`` are resized whole to crop_size x crop_size (LANCZOS) instead of cropped:
    the official TVT data recipe resizes FFHQ faces to 512 and crops LSDIR (its README).

    item: dict(hr=(3, S, S) float in [0, 1], index=int, path=str). Images smaller than the crop are reflect-padded
    (``small_policy="pad"``) or dropped when the dataset is built (``"skip"``; one warning with the count).
    Unreadable files are skipped with a warning naming them and another index is returned.
    """

    def __init__(
        self,
        sources: str | Path | Sequence[str | Path],
        crop_size: int = 512,
        use_flip: bool = True,
        use_rot: bool = True,
        small_policy: str = "pad",
        seed: int = 0,
        resize_sources: Sequence[str | Path] = (),
    ):
        if small_policy not in ("pad", "skip"):
            raise ValueError(f"small_policy must be 'pad' or 'skip', got {small_policy!r}")
        self.paths = expand_sources(sources)
        if not self.paths:
            raise ValueError(f"no images found in {sources}")
        self.resized = set(expand_sources(resize_sources)) if resize_sources else set()
        unknown = self.resized - set(self.paths)
        if unknown:
            raise ValueError(f"resize_sources must also be training sources; not among them: {sorted(map(str, unknown))[:3]}")
        self.crop_size, self.use_flip, self.use_rot = crop_size, use_flip, use_rot
        self.small_policy, self.seed, self.epoch = small_policy, seed, 0
        self.bad: set[int] = set()
        self.num_small = 0
        if small_policy == "skip":
            self.paths = self._drop_small(self.paths)

    def _drop_small(self, paths: list[Path]) -> list[Path]:
        from PIL import Image

        kept = []
        for p in paths:
            try:
                with Image.open(p) as img:
                    small = min(img.size) < self.crop_size and p not in self.resized
            except (OSError, ValueError):  # unreadable (PIL raises OSError subclasses): kept here, skipped with a warning in __getitem__
                small = False
            if small:
                self.num_small += 1
            else:
                kept.append(p)
        if self.num_small:
            log.warning("skipped %d images smaller than crop_size=%d", self.num_small, self.crop_size)
        if not kept:
            raise ValueError(f"all images are smaller than crop_size={self.crop_size}")
        return kept

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> torch.Tensor | None:
        path = self.paths[index]
        try:
            img = read_image(path)
            if path in self.resized:
                from PIL import Image

                img = img.resize((self.crop_size, self.crop_size), Image.LANCZOS)
            return pil_to_tensor(img)  # (3, H, W)
        except (ImageReadError, FileNotFoundError) as err:
            if index not in self.bad:
                log.warning("skipping unreadable image %s: %s", path, err)
                self.bad.add(index)
            return None

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        hr, i = self._load(index), index
        for _ in range(len(self.paths)):  # fall back to other (deterministic) indices; never crash mid-epoch
            if hr is not None:
                break
            i = int(rng.integers(len(self.paths)))
            hr = None if i in self.bad else self._load(i)
        if hr is None:
            raise RuntimeError("no readable image found in the dataset")
        s = self.crop_size
        _, h, w = hr.shape
        if h < s or w < s:  # reflect pad; reflect needs pad < size, so repeat for very small images
            if not self.num_small:
                log.warning("image %s (%dx%d) is smaller than crop_size=%d; reflect-padding", self.paths[i], w, h, s)
            self.num_small += 1
            hr = pad_to(hr, s)
            _, h, w = hr.shape
        top, left = int(rng.integers(h - s + 1)), int(rng.integers(w - s + 1))
        hr = hr[:, top : top + s, left : left + s]
        if self.use_flip and rng.uniform() < 0.5:
            hr = hr.flip(-1)
        if self.use_rot:
            if rng.uniform() < 0.5:
                hr = hr.flip(-2)
            if rng.uniform() < 0.5:
                hr = hr.transpose(-1, -2)
        return {"hr": hr.contiguous(), "index": index, "path": str(self.paths[i])}


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
        from PIL import Image

        bad = []
        for name in sorted(hr):
            with Image.open(hr[name]) as a, Image.open(lr[name]) as b:
                if (a.size[0], a.size[1]) != (b.size[0] * scale, b.size[1] * scale):
                    bad.append(f"{name}: HR {a.size[0]}x{a.size[1]} vs LR {b.size[0]}x{b.size[1]} (x{scale})")
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


__all__ = ["HRImageDataset", "PairedImageDataset", "expand_sources", "pad_to", "seed_worker"]
