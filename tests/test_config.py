from dataclasses import dataclass, field

import pytest

from tvt.config import ConfigError, load_config


@dataclass
class _Inner:
    lr: float = 1e-4
    steps: int = 10


@dataclass
class _Schema:
    name: str = "x"
    train: _Inner = field(default_factory=_Inner)


def test_yaml_and_overrides_merge(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: run\ntrain:\n  steps: 5\n")
    cfg = load_config(_Schema, p, ["train.lr=0.5"])
    assert isinstance(cfg, _Schema) and cfg.name == "run" and cfg.train.steps == 5 and cfg.train.lr == 0.5


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  stpes: 5\n")
    with pytest.raises(ConfigError, match="stpes"):
        load_config(_Schema, p)
    with pytest.raises(ConfigError, match="bogus"):
        load_config(_Schema, None, ["bogus=1"])


def test_wrong_type_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="steps"):
        load_config(_Schema, None, ["train.steps=abc"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(_Schema, tmp_path / "none.yaml")
