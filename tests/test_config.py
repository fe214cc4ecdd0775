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


@dataclass
class _Cli:
    input: str = ""  # an image or folder
    upscale: int = 4
    overwrite: bool = False
    tile_size: int = 0
    files: list = field(default_factory=list)
    train: _Inner = field(default_factory=_Inner)


def test_one_grammar_for_flags_overrides_aliases_and_positionals(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("upscale: 2\n")
    cfg = load_config(_Cli, ["--config", str(p), "-i", "x.png", "--overwrite", "--tile-size", "64", "train.lr=0.5",
                             "--train.steps=7", "a.json", "b.json"], aliases={"-i": "input"}, positional="files")
    assert (cfg.input, cfg.upscale, cfg.overwrite, cfg.tile_size) == ("x.png", 2, True, 64)
    assert cfg.train.lr == 0.5 and cfg.train.steps == 7 and cfg.files == ["a.json", "b.json"]
    assert load_config(_Cli, ["--overwrite=false", "--upscale", "-1"]).upscale == -1  # a negative number is a value
    assert load_config(_Cli, ["--files", "a:1,2", "--files", "b=c"]).files == ["a:1,2", "b=c"]  # repeated list flag
    with pytest.raises(ConfigError, match="unexpected"):
        load_config(_Cli, ["stray"])
    with pytest.raises(ConfigError, match="upscale"):
        load_config(_Cli, ["--upscale", "four"])
    with pytest.raises(ConfigError, match="needs a value"):
        load_config(_Cli, ["--upscale"])


def test_help_lists_every_key_with_type_default_and_comment():
    from tvt.config import HelpRequested

    with pytest.raises(HelpRequested) as info:
        load_config(_Cli, ["--help"], doc="Super-resolve.", prog="infer", aliases={"-i": "input"})
    text = str(info.value)
    assert text.startswith("usage: infer") and "Super-resolve." in text and "-i = --input" in text
    assert "input" in text and "an image or folder" in text and "train.lr" in text and "(float, 0.0001)" in text
