"""YAML configs checked against dataclass schemas (OmegaConf structured configs).

    cfg = load_config(VAEStage1Config, "configs/vae_stage1.yaml", ["train.lr=1e-4"])

An unknown or mistyped key, or a value of the wrong type, raises ConfigError naming it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override does not match its schema."""


def _describe(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or getattr(err, "key", None)
    msg = str(err).splitlines()[0]
    return f"key '{key}': {msg}" if key else msg


def load_config(schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Merge schema defaults <- YAML file <- ``key=value`` overrides; return a typed dataclass instance."""
    base = OmegaConf.structured(schema)
    layers = []
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        layers.append(OmegaConf.load(path))
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got: {bad}")
    if overrides:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
    try:
        merged = OmegaConf.merge(base, *layers)
        OmegaConf.resolve(merged)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid config{where}: {_describe(err)}") from None


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML (saved into every run folder)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg) if dataclasses.is_dataclass(cfg) else cfg)
