"""A catalog of the paper's datasets under the data root (tvt.roots.data_root: TVT_DATA, else data/ of the checkout).

    paired_dirs("RealSR")              (LR folder, HR folder, scale) of a Table 2 test set
    catalog()["LSDIR"].list            the training file list, relative to the root

Configs name files relative to the root with the ``${data:...}`` interpolation (``val_hr: ${data:RealSR/HR}``),
so one environment variable moves every config. A missing dataset is one error naming the set, where it was
looked for and where to get it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import InputError
from ..io import list_images
from ..roots import DATA_ROOT_ENV, data_root

log = logging.getLogger(__name__)
CATALOG_FILE = Path(__file__).with_name("datasets.yaml")  # package data


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    kind: str  # paired | images
    path: str  # relative to the data root
    use: str = ""
    get: str = ""
    scale: int = 4
    list: str = ""  # images: file list relative to the root
    hr: str = "HR"
    lr: str = "LR"
    optional: bool = False  # not one of the paper's sets: not reported missing
    pairs: int = 0  # paired: the number of pairs of the paper's set (0: not checked)
    sizes: bool = False  # images: the list records each image's size (the stride windows are counted from it)
    annos: str = ""  # paired text sets (RealCE): the folder of text-line annotations by image stem

    def folder(self, root: Path | None = None) -> Path:
        return (root or data_root()) / self.path


@lru_cache(maxsize=1)
def catalog() -> dict[str, DatasetEntry]:
    import yaml

    return {name: DatasetEntry(name=name, **fields) for name, fields in yaml.safe_load(CATALOG_FILE.read_text()).items()}


def dataset(name: str) -> DatasetEntry:
    if name not in catalog():
        raise InputError(f"unknown dataset '{name}'; known: {', '.join(catalog())}")
    return catalog()[name]


def paired_dirs(name: str, root: str | Path | None = None) -> tuple[Path, Path, int]:
    """(lr_dir, hr_dir, scale) of a paired test set under ``root`` (default: the data root)."""
    entry = dataset(name)
    if entry.kind != "paired":
        raise InputError(f"dataset '{name}' is a training image set, not an HR/LR test set")
    base = entry.folder(Path(root).expanduser().resolve() if root else None)
    lr, hr = base / entry.lr, base / entry.hr
    for d in (hr, lr):
        if not d.is_dir():
            raise InputError(f"dataset '{name}' not found: no folder {d} (data root {base.parent}, set {DATA_ROOT_ENV} or "
                             f"--data_root). Get it: {entry.get}; then `python scripts/prepare_data.py`")
    return lr, hr, entry.scale


def annos_dir(name: str, root: str | Path | None = None) -> Path | None:
    """The annotation folder of a paired text set (RealCE), None for other sets."""
    entry = dataset(name)
    if not entry.annos:
        return None
    folder = entry.folder(Path(root).expanduser().resolve() if root else None) / entry.annos
    if not folder.is_dir():
        raise InputError(f"dataset '{name}': no annotation folder {folder}. Get it: {entry.get}")
    return folder


def missing_datasets(root: Path | None = None) -> dict[str, str]:
    """{name: one line saying where it was looked for and where to get it} for every absent dataset."""
    root = root or data_root()
    out = {}
    for e in (e for e in catalog().values() if not e.optional):
        where = root / e.list if e.kind == "images" else e.folder(root)
        ok = where.is_file() if e.kind == "images" else all((where / s).is_dir() for s in (e.hr, e.lr))
        if not ok:
            out[e.name] = f"{e.name}: not found at {where} ({e.use}). Get it: {e.get}"
    return out


# ---------------------------------------------------------------------------------------------
# Arranging a user's downloads under the root (scripts/prepare_data.py)
# ---------------------------------------------------------------------------------------------
PAIR_LAYOUTS = (("HR", "LR"), ("test_HR", "test_LR"), ("gt", "lq"), ("GT", "LQ"), ("HR", "LR_x4"))


def find_pair_layout(src: Path) -> tuple[Path, Path] | None:
    """(hr, lr) subfolders of a downloaded paired test set, in any of the usual namings; None if there are none."""
    for hr, lr in PAIR_LAYOUTS:
        if (src / hr).is_dir() and (src / lr).is_dir():
            return src / hr, src / lr
    return None


def install_paired(name: str, src: str | Path, root: Path | None = None, link: bool = True) -> Path:
    """Put a downloaded paired test set at ``<root>/<path>/{HR,LR}`` (symlinks, or copies with ``link=False``)."""
    import shutil

    entry, src = dataset(name), Path(src).expanduser().resolve()
    found = find_pair_layout(src)
    if found is None:
        raise InputError(f"{name}: {src} holds none of the folder pairs {', '.join('/'.join(p) for p in PAIR_LAYOUTS)}"
                         f" ({name}: {entry.use}; get it: {entry.get})")
    dest = entry.folder(root)
    dest.mkdir(parents=True, exist_ok=True)
    for folder, sub in zip(found, (entry.hr, entry.lr)):
        target = dest / sub
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        if link:
            target.symlink_to(folder, target_is_directory=True)
        else:
            shutil.copytree(folder, target)
    paired_dirs(name, root)  # names and folders check out
    if entry.pairs and len(list_images(found[0])) != entry.pairs:
        log.warning("%s: %d HR images in %s; the paper's set has %d", name, len(list_images(found[0])), found[0],
                    entry.pairs)
    return dest


def build_centre_crops(name: str, hr: str | Path, root: Path | None = None) -> dict:
    """Our synthetic set ``name`` (DIV2K-centre-crops): 512 centre crops of ``hr`` degraded with seed 0."""
    from .testset import make_testset

    return make_testset(hr, dataset(name).folder(root), size=512, seed=0)


def write_file_list(name: str, src: str | Path, root: Path | None = None, limit: int | None = None) -> Path:
    """``<root>/lists/<name>.txt``: the images under ``src`` (recursive, sorted), at most ``limit`` of them; for a
    set whose entry says ``sizes``, each line is ``path<TAB>width<TAB>height`` (read once here from the headers, so
    a run counts its stride windows without opening every image; tvt.data.mix)."""
    from ..io import atomic_path, is_image_file

    entry, src = dataset(name), Path(src).expanduser().resolve()
    if not src.is_dir():
        raise InputError(f"{name}: not a folder: {src}")
    files = sorted(p for p in src.rglob("*") if p.is_file() and is_image_file(p))[:limit]
    if not files:
        raise InputError(f"{name}: no images under {src}")
    path = (root or data_root()) / entry.list
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(_list_line(p, entry.sizes) for p in files))
    return path


def _list_line(path: Path, sizes: bool) -> str:
    from .mix import image_size

    size = image_size(path) if sizes else None  # None also for an unreadable file: skipped with a warning in training
    return f"{path}\t{size[0]}\t{size[1]}\n" if size else f"{path}\n"
