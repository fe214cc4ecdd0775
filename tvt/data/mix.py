"""The training data mix: which HR crop each sample index is, and each source's share of the samples.

The official release pre-cuts its data (TVT README, "Prepare training data", both stages): every LSDIR image
becomes all its 512x512 windows at stride 64, FFHQ faces are resized whole to 512, and training draws from the
pooled files, so an image counts as many times as it has windows. ``SourceMix`` gives the same distribution
without writing the windows to disk: sample ``k`` of an epoch is one (image, window) pair.

A source is a folder, glob or file list with its options (config ``data.sources``; a bare string takes the
defaults)::

    {path: ${data:lists/lsdir.txt}, stride: 64}    # every crop_size window at stride 64 is one sample (default)
    {path: ${data:lists/ffhq10k.txt}, resize: true} # each image resized whole to crop_size: one sample
    {path: ${data:lists/openimage.txt}, stride: null} # each image one sample, cropped anywhere
    weight: 2.0                                      # any source: its samples per epoch x 2 (default 1)

Windows per image along a side of n px: ``(n - crop) // stride + 1``, the plain sliding window (the README does
not say whether a last window flush with the edge is added; we add none), and none when n < crop: the image is left
out, as pre-cutting would leave it. Image sizes come from the file list (``path<TAB>width<TAB>height``, written
by scripts/prepare_data.py) or, when absent, from the image headers.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..io import ImageReadError, list_images
from ..io import image_size as io_image_size

log = logging.getLogger(__name__)

OFFICIAL_STRIDE = 64  # TVT README: "a sliding window with a stride of 64 pixels"


@dataclass(frozen=True)
class Source:
    path: str
    stride: int | None = OFFICIAL_STRIDE  # windows of crop_size at this stride; None: one sample per image
    weight: float = 1.0  # multiplies the source's samples per epoch
    resize: bool = False  # the whole image resized to crop_size (one sample per image)

    @property
    def windowed(self) -> bool:
        return self.stride is not None and not self.resize


def parse_sources(entries) -> list[Source]:
    """Config ``data.sources`` (strings, paths or dicts with Source's keys) -> Sources; ConfigError on bad keys."""
    if isinstance(entries, (str, Path, Mapping, Source)):
        entries = [entries]
    known = {f.name for f in fields(Source)}
    out = []
    for e in entries:
        if isinstance(e, Source):
            src = e
        elif isinstance(e, (str, Path)):
            src = Source(str(e))
        elif isinstance(e, Mapping):
            e = dict(e)
            bad = set(e) - known
            if bad or "path" not in e:
                raise ConfigError(f"data.sources entry {dict(e)}: needs 'path'; keys are {sorted(known)}"
                                  + (f" (unknown: {sorted(bad)})" if bad else ""))
            src = Source(**{**e, "path": str(e["path"])})
        else:
            raise ConfigError(f"data.sources entry {e!r}: give a path or a dict with keys {sorted(known)}")
        if src.stride is not None and int(src.stride) < 1:
            raise ConfigError(f"data.sources {src.path}: stride must be a positive number of pixels or null")
        if not float(src.weight) > 0:
            raise ConfigError(f"data.sources {src.path}: weight must be > 0, got {src.weight}")
        out.append(src)
    return out


def expand_sized(source: str | Path) -> list[tuple[Path, tuple[int, int] | None]]:
    """(image, (width, height) or None) of a folder, image, glob or ``.txt`` list (one path a line, relative to
    the list's folder, optionally ``<TAB>width<TAB>height``)."""
    src = Path(source)
    if src.suffix.lower() != ".txt" or not src.is_file():
        return [(p, None) for p in list_images(src)]
    out = []
    for line in src.read_text().splitlines():
        parts = line.strip().split("\t")
        if not parts[0] or parts[0].startswith("#"):
            continue
        p = Path(parts[0])
        size = (int(parts[1]), int(parts[2])) if len(parts) == 3 else None
        out.append((p if p.is_absolute() else src.parent / p, size))
    return out


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) as read_image returns the image, from the header; None if unreadable (skipped when read)."""
    try:
        return io_image_size(path)
    except (ImageReadError, FileNotFoundError):
        return None


def windows_along(n: int, crop: int, stride: int) -> int:
    return (n - crop) // stride + 1 if n >= crop else 0


class SourceMix:
    """Sample index -> (image, window) over weighted sources; ``shares`` says how much of an epoch each source is.

    Source s has n_s items (windows, or images) and m_s = max(1, round(weight * n_s)) samples per epoch; its j-th
    sample of epoch e is item (j + e * m_s) mod n_s, so a weight below 1 walks through every item over epochs.
    """

    def __init__(self, sources: Sequence[Source], crop_size: int, listings: dict | None = None):
        """``listings``: {source number: [(path, size or None)]} in place of the files its path names."""
        self.sources, self.crop = list(sources), crop_size
        self.paths: list[Path] = []
        self.source_of: list[int] = []  # per image
        grid, self.left_out = [], [0] * len(self.sources)  # per image (rows, cols); images without a window
        for s, src in enumerate(self.sources):
            for path, size in (listings or {}).get(s) or expand_sized(src.path):
                rows = cols = 1  # one item: an image sampled whole or anywhere, or an unreadable one (skipped when read)
                if src.windowed:
                    size = size or image_size(path)
                    if size is not None:
                        cols, rows = (windows_along(n, crop_size, src.stride) for n in size)
                    if rows * cols == 0:
                        self.left_out[s] += 1
                        continue
                self.paths.append(path)
                self.source_of.append(s)
                grid.append((rows, cols))
        self.grid = np.asarray(grid, dtype=np.int64).reshape(-1, 2)
        counts = self.grid[:, 0] * self.grid[:, 1]
        src_of = np.asarray(self.source_of, dtype=np.int64)
        self.items = np.asarray([counts[src_of == s].sum() for s in range(len(self.sources))], dtype=np.int64)
        self.samples = np.asarray([max(1, round(float(src.weight) * n)) if n else 0
                                   for src, n in zip(self.sources, self.items)], dtype=np.int64)
        # item t of source s -> its image: the last one whose first item is <= t
        self.image_index: list[np.ndarray] = []  # per source: its images
        self.first_item: list[np.ndarray] = []  # per source: each image's first item
        for s in range(len(self.sources)):
            idx = np.flatnonzero(src_of == s)
            self.image_index.append(idx)
            self.first_item.append(np.cumsum(counts[idx]) - counts[idx])
        self.sample_start = np.cumsum(self.samples) - self.samples
        for s, n in enumerate(self.left_out):
            if n:
                log.warning("%s: %d images smaller than crop_size=%d have no window (stride %d) and are left out",
                            self.sources[s].path, n, crop_size, self.sources[s].stride)

    def __len__(self) -> int:
        return int(self.samples.sum())

    def locate(self, index: int, epoch: int) -> tuple[int, tuple[int, int] | None]:
        """Sample ``index`` of ``epoch`` -> (image, (top, left) of its window, or None: crop where you like)."""
        s = int(np.searchsorted(self.sample_start, index, side="right")) - 1
        j, n = index - int(self.sample_start[s]), int(self.items[s])
        t = (j + epoch * int(self.samples[s])) % n
        if not self.sources[s].windowed:  # one item per image
            return int(self.image_index[s][t]), None
        k = int(np.searchsorted(self.first_item[s], t, side="right")) - 1
        image = int(self.image_index[s][k])
        row, col = divmod(t - int(self.first_item[s][k]), int(self.grid[image, 1]))
        stride = int(self.sources[s].stride)
        return image, (row * stride, col * stride)

    def shares(self) -> dict[str, float]:
        """{source path: fraction of an epoch's samples}."""
        total = max(len(self), 1)
        return {src.path: float(m) / total for src, m in zip(self.sources, self.samples)}

    def describe(self) -> str:
        """One line per source: images, samples per epoch and share (logged when a run starts)."""
        lines = [f"training data: {len(self):,} samples per epoch of {self.crop} px"]
        for s, src in enumerate(self.sources):
            images = len(self.image_index[s])
            how = ("resized whole" if src.resize else f"{self.items[s]:,} windows at stride {src.stride}"
                   if src.windowed else "one crop per image")
            weight = f", weight {src.weight:g}" if float(src.weight) != 1 else ""
            lines.append(f"  {100 * self.samples[s] / max(len(self), 1):6.2f}%  {src.path}: {images:,} images, {how}{weight}")
        return "\n".join(lines)


__all__ = ["OFFICIAL_STRIDE", "Source", "SourceMix", "expand_sized", "image_size", "parse_sources", "windows_along"]
