"""Where files live: the data root, the weights root and the bundled samples. Both roots read their environment
variable the same way: the variable if set, else the folder of that name in the source checkout, else in the
current folder.

    data_root()      TVT_DATA, else data/ of the checkout        datasets (tvt.data.catalog), ``${data:...}``
    weights_root()   TVT_WEIGHTS, else weights/ of the checkout  local weight files (tvt.weights), ``${weights:...}``
    samples_root()   data/samples of the checkout               the images bundled with the repository
"""
from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_ENV = "TVT_DATA"
WEIGHTS_ROOT_ENV = "TVT_WEIGHTS"
CHECKOUT = Path(__file__).resolve().parents[1]  # the repository, when tvt runs from a source checkout


def _root(env: str, folder: str) -> Path:
    value = os.environ.get(env)
    if value:
        return Path(value).expanduser().resolve()
    base = CHECKOUT if (CHECKOUT / "pyproject.toml").is_file() else Path.cwd()
    return base / folder


def data_root() -> Path:
    """The folder datasets are found under: $TVT_DATA, else ``data/`` of the checkout (which holds the bundled
    samples), else ./data."""
    return _root(DATA_ROOT_ENV, "data")


def weights_root() -> Path:
    """The folder local weight files are found under: $TVT_WEIGHTS, else ``weights/`` of the checkout, else ./weights."""
    return _root(WEIGHTS_ROOT_ENV, "weights")


def samples_root() -> Path:
    """The few sample images bundled with the repository (data/samples/README.md): toy runs, demo, tests."""
    return CHECKOUT / "data" / "samples"
