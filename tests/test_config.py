from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from tvt.config import ConfigError, config_help, load_config, ranged


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


def test_tiny_configs_name_their_inputs_by_stage_and_say_what_makes_the_tiny_sd(tmp_path, monkeypatch):
    """Every tiny config loads; its inputs are runs/tiny_sd and latest:<stage>, and a fresh folder gets one line
    saying which command makes the tiny SD folder (not a hint to download SD 2.1)."""
    from tvt.errors import MissingWeightsError
    from tvt.train.isr import ISRConfig, ISRStage
    from tvt.train.vae_transfer import VAETransferConfig

    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny"
    cfgs = {name: load_config(schema, tiny / f"{name}.yaml") for name, schema in
            (("vae_teacher", VAETransferConfig), ("vae_stage1", VAETransferConfig), ("vae_stage2", VAETransferConfig),
             ("isr", ISRConfig))}
    assert cfgs["vae_stage2"].decoder_from == "latest:tiny_vae_stage1" and cfgs["isr"].vae_d4 == "latest:tiny_vae_stage2"
    assert {cfgs[n].sd_model for n in ("vae_stage1", "vae_stage2", "isr")} == {"./runs/tiny_sd"}
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingWeightsError, match=r"runs/tiny_sd.*python scripts/toy\.py"):
        ISRStage(cfgs["isr"]).setup(_NoAccelerator())


class _NoAccelerator:
    device = "cpu"
    mixed_precision = "no"


def test_every_script_is_a_console_command_and_answers_help(capsys):
    """pyproject's [project.scripts] lists every command of scripts/ (tvt-<name>), each resolves to its main, and
    --help prints the command's keys and exits 0."""
    import importlib
    import tomllib

    root = Path(__file__).resolve().parents[1]
    entries = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    commands = sorted(p.stem for p in (root / "scripts").glob("*.py")
                      if not p.stem.startswith("_") and "\ndef main(" in p.read_text())
    assert entries == {f"tvt-{c.replace('_', '-')}": f"tvt_scripts.{c}:main" for c in commands}
    for name, target in entries.items():
        module, _, fn = target.partition(":")
        main = getattr(importlib.import_module(module), fn)
        assert main(["--help"]) == 0, name
        assert "--" in capsys.readouterr().out, name


@dataclass
class _Ranged:
    every: int = ranged(500, min=1)  # steps between saves
    share: float = ranged(0.5, min=0, max=1)
    tile: Optional[int] = ranged(None, min=0)  # 0: none
    train: _Inner = field(default_factory=_Inner)


def test_numeric_ranges_are_checked_up_front_and_shown_in_help():
    """A field declared with ``ranged`` refuses values outside its range with one line naming the key; an unset
    Optional passes; --help shows the range."""
    assert load_config(_Ranged, ["every=1", "share=1", "tile=0"]).every == 1
    assert load_config(_Ranged, []).tile is None
    for override, message in (("every=0", "every must be >= 1, got 0"), ("share=1.5", "share must be between 0 and 1"),
                               ("tile=-5", "tile must be >= 0, got -5")):
        with pytest.raises(ConfigError) as e:
            load_config(_Ranged, [override])
        assert message in str(e.value) and "\n" not in str(e.value)
    text = config_help(_Ranged)
    assert "(int, 500, >= 1)  steps between saves" in text and "(float, 0.5, between 0 and 1)" in text


@pytest.mark.parametrize("argv, message", [(["--tile_size", "-5"], "tile_size must be >= 0, got -5"),
                                           (["--process_size", "-1"], "process_size must be >= 0, got -1")])
def test_infer_refuses_out_of_range_numbers_before_any_work(argv, message, tmp_path, capsys):
    from tvt_scripts.infer import main

    (tmp_path / "in").mkdir()
    assert main(["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", "bicubic", *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n" and not (tmp_path / "out").exists()
