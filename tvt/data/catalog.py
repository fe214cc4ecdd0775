"""Where data lives: one data root and a catalog of the paper's datasets.

    data_root()                        TVT_DATA, else data/ of the source checkout (else ./data)
    paired_dirs("RealSR")              (LR folder, HR folder, scale) of a Table 2 test set
    catalog()["LSDIR"].list            the training file list, relative to the root

Configs name files relative to the root with the ``${data:...}`` interpolation (``val_hr: ${data:RealSR/HR}``),
so one environment variable moves every config. A missing dataset is one error naming the set, where it was
looked for and where to get it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import InputError

DATA_ROOT_ENV = "TVT_DATA"
CATALOG_FILE = Path(__file__).with_name("datasets.yaml")  # package data


def data_root() -> Path:
    """The folder datasets are found under: $TVT_DATA, else ``data/`` beside the ``tvt`` package when it runs from
    a source checkout (the repository's data/, which holds the bundled samples), else ./data."""
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return checkout / "data"
    return Path.cwd() / "data"


def samples_root() -> Path:
    """The few sample images bundled with the repository (data/samples/README.md): toy runs, demo, tests."""
    return Path(__file__).resolve().parents[2] / "data" / "samples"


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


def missing_datasets(root: Path | None = None) -> dict[str, str]:
    """{name: one line saying where it was looked for and where to get it} for every absent dataset."""
    root = root or data_root()
    out = {}
    for e in catalog().values():
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
        raise InputError(f"{name}: {src} holds none of the folder pairs {', '.join('/'.join(p) for p in PAIR_LAYOUTS)}")
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
    return dest


def write_file_list(name: str, src: str | Path, root: Path | None = None, limit: int | None = None) -> Path:
    """``<root>/lists/<name>.txt``: the images under ``src`` (recursive, sorted), at most ``limit`` of them."""
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
        tmp.write_text("\n".join(str(p) for p in files) + "\n")
    return path
