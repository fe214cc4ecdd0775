"""RealCE (Ma et al., ICCV 2023): arranging the download, and text-keeping paired crops for STISR training.

    prepare_realce("~/dl/RealCE", root)          # -> <root>/RealCE/{train,test}/{HR,LR,annos}
    ds = TextPairDataset(hr_dir, lr_dir, annos_dir, crop_size=512)   # item: hr, gt, lr, lr_up (+ index, path)

The download (Real-CE's ``get_RealCE``): ``<split>/{13mm,26mm,52mm}/<name>.jpg`` with ``<split>/valid_list.txt``;
the test split (Real-CE's phase "val") has ``val/annos/<name>.txt`` (GBK), the training split
``train/trans_annos_52mm_renov/res_<name>.txt`` (UTF-8). Real-CE's x4 protocol: GT = the 52 mm image, LR = the
13 mm image (registered to the 52 mm frame, same size) resized by cv2 INTER_CUBIC to (W // 4, H // 4), GT cropped
to 4x the LR. We store those LR/GT pairs as 8-bit PNG (Real-CE keeps the LR in float: at most half a grey level
apart) and the annotations as UTF-8, so evaluation and training read plain folders.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import InputError
from ..text.protocol import TextLine, annotation_text, read_annotations

SPLITS = {"test": ("val", "test"), "train": ("train",)}  # our split -> folder names Real-CE's download uses


# ---------------------------------------------------------------------------------------------
# Arranging the download
# ---------------------------------------------------------------------------------------------
def _source_split(src: Path, split: str) -> Path | None:
    for name in SPLITS[split]:
        if (src / name / "13mm").is_dir() and (src / name / "52mm").is_dir():
            return src / name
    return None


def _anno_source(folder: Path, split: str, stem: str) -> Path:
    if split == "test":
        return folder / "annos" / f"{stem}.txt"
    return folder / "trans_annos_52mm_renov" / f"res_{stem}.txt"


def realce_pair(lr_13mm: np.ndarray, gt_52mm: np.ndarray, scale: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Real-CE's x4 pair from the 13 mm and 52 mm images (H, W, 3) uint8: LR = INTER_CUBIC resize of the 13 mm
    image (as float in [0, 1]) to (W // s, H // s), GT cropped to s x LR. Returns uint8 (LR, GT)."""
    import cv2

    h, w = gt_52mm.shape[:2]
    lr = cv2.resize(lr_13mm.astype(np.float32) / 255, (w // scale, h // scale), interpolation=cv2.INTER_CUBIC)
    lr = np.clip(np.round(lr * 255), 0, 255).astype(np.uint8)
    return lr, gt_52mm[: lr.shape[0] * scale, : lr.shape[1] * scale]


def prepare_realce(src: str | Path, dest: str | Path, splits=("test", "train"), scale: int = 4) -> dict[str, int]:
    """Build ``dest/<split>/{HR,LR,annos}`` from a RealCE download; returns {split: pairs}. One-line errors name
    the missing folder or file."""
    from PIL import Image

    from ..io import read_image, save_image

    src, dest = Path(src).expanduser().resolve(), Path(dest)
    counts = {}
    for split in splits:
        folder = _source_split(src, split)
        if folder is None:
            raise InputError(f"RealCE: no {' or '.join(SPLITS[split])}/13mm and 52mm folders under {src}")
        listed = folder / "valid_list.txt"
        names = ([n.strip() for n in listed.read_text().splitlines() if n.strip()] if listed.is_file()
                 else sorted(p.name for p in (folder / "13mm").iterdir()))
        out = {sub: dest / split / sub for sub in ("HR", "LR", "annos")}
        for d in out.values():
            d.mkdir(parents=True, exist_ok=True)
        for name in names:
            stem = Path(name).stem
            anno = _anno_source(folder, split, stem)
            if not anno.is_file():
                raise InputError(f"RealCE {split}: annotation file not found: {anno}")
            lr, gt = realce_pair(np.asarray(read_image(folder / "13mm" / name)),
                                 np.asarray(read_image(folder / "52mm" / name)), scale)
            save_image(Image.fromarray(gt), out["HR"] / f"{stem}.png")
            save_image(Image.fromarray(lr), out["LR"] / f"{stem}.png")
            read_annotations(anno)  # every line checked now, not at evaluation
            (out["annos"] / f"{stem}.txt").write_text(annotation_text(anno), encoding="utf-8")
        counts[split] = len(names)
    return counts


# ---------------------------------------------------------------------------------------------
# Text-keeping crops
# ---------------------------------------------------------------------------------------------
def _choose(lo: float, hi: float, scale: int, rng: np.random.Generator) -> int:
    """A multiple of ``scale`` in [lo, hi] (uniform), or the one nearest below hi when there is none."""
    first, last = math.ceil(max(lo, 0) / scale), math.floor(max(hi, 0) / scale)
    return scale * (int(rng.integers(first, last + 1)) if last >= first else last)


def text_keeping_crop(polygons: list[np.ndarray], height: int, width: int, size: int, scale: int,
                      rng: np.random.Generator) -> tuple[int, int]:
    """(top, left) of a ``size`` crop of an (height, width) image, multiples of ``scale``: it holds one whole text
    line (drawn uniformly among those whose box fits), else is centred on a line, else is uniform."""
    fits = [p for p in polygons if np.ptp(p[:, 0]) < size and np.ptp(p[:, 1]) < size]
    pool = fits or list(polygons)
    if not pool:
        return _choose(0, height - size, scale, rng), _choose(0, width - size, scale, rng)
    p = pool[int(rng.integers(len(pool)))]
    (x0, y0), (x1, y1) = p.min(0), p.max(0)
    if fits:
        top = _choose(max(0, y1 + 1 - size), min(y0, height - size), scale, rng)
        left = _choose(max(0, x1 + 1 - size), min(x0, width - size), scale, rng)
    else:
        top = _choose((y0 + y1 - size) / 2, (y0 + y1 - size) / 2, scale, rng)
        left = _choose((x0 + x1 - size) / 2, (x0 + x1 - size) / 2, scale, rng)
    return min(top, max(height - size, 0) // scale * scale), min(left, max(width - size, 0) // scale * scale)


class TextPairDataset(Dataset):
    """Paired HR/LR images with RealCE annotations (matched by stem), as ``crop_size`` HR crops that keep a text
    line whole. item: hr = gt (3, S, S), lr (3, S/s, S/s), lr_up (3, S, S) = bicubic of lr (the generator's input,
    as at inference), all float in [0, 1]; index, path. No synthetic degradation: the LR is the real one.
    Crops come from a generator seeded by (seed, epoch, index). Images smaller than the crop are reflect-padded.
    """

    def __init__(self, hr_dir, lr_dir, annos_dir, crop_size: int = 512, scale: int = 4, seed: int = 0):
        from ..io import list_images

        self.hr = {p.stem: p for p in list_images(hr_dir)}
        lr = {p.stem: p for p in list_images(lr_dir)}
        missing = sorted(self.hr.keys() ^ lr.keys())
        if missing:
            raise InputError(f"HR {hr_dir} and LR {lr_dir} do not match: {', '.join(missing[:5])}")
        if crop_size % scale:
            raise InputError(f"crop_size {crop_size} is not a multiple of scale {scale}")
        self.names, self.lr, self.annos_dir = sorted(self.hr), lr, Path(annos_dir)
        self.crop_size, self.scale, self.seed, self.epoch = crop_size, scale, seed, 0
        self.polygons = {n: [ln.polygon for ln in read_annotations(self.annos_dir / f"{n}.txt")[0]] for n in self.names}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        from .datasets import pad_to
        from ..io import pil_to_tensor, read_image

        name, s, k = self.names[index], self.crop_size, self.scale
        hr, lr = pil_to_tensor(read_image(self.hr[name])), pil_to_tensor(read_image(self.lr[name]))
        if hr.shape[1:] != (lr.shape[1] * k, lr.shape[2] * k):
            raise InputError(f"{name}: HR {tuple(hr.shape[1:])} is not {k}x LR {tuple(lr.shape[1:])}")
        hr, lr = pad_to(hr, s), pad_to(lr, s // k)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        top, left = text_keeping_crop(self.polygons[name], hr.shape[1], hr.shape[2], s, k, rng)
        hr = hr[:, top:top + s, left:left + s].contiguous()
        lr = lr[:, top // k:(top + s) // k, left // k:(left + s) // k].contiguous()
        lr_up = F.interpolate(lr[None], size=(s, s), mode="bicubic", align_corners=False)[0].clamp(0, 1)
        return {"hr": hr, "gt": hr, "lr": lr, "lr_up": lr_up, "index": index, "path": str(self.hr[name])}


def lines_in_crop(lines: list[TextLine], top: int, left: int, size: int) -> list[TextLine]:
    """The text lines wholly inside a ``size`` crop at (top, left), in the crop's coordinates (validation on crops)."""
    out = []
    for line in lines:
        p = line.polygon - np.array([left, top], dtype=np.int32)
        if p.min() >= 0 and p.max() < size:
            out.append(TextLine(p, line.text, line.line_no))
    return out


__all__ = ["TextPairDataset", "prepare_realce", "realce_pair", "lines_in_crop", "text_keeping_crop"]
