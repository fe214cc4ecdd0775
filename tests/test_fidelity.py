"""docs/fidelity.md is the contract: every paper-scale config value, inference default and code reference in its
tables must match the code, and every method setting of a paper-scale config must have a row."""
import importlib
import inspect
import math
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from tvt.config import load_config
from tvt.data.degradation import config_path, load_degradation_config
from tvt.pipeline import TVTPipeline
from tvt.train.isr import ISRConfig
from tvt.train.vae_transfer import VAETransferConfig

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "fidelity.md"
HEADER = ["setting", "paper", "official release", "config", "key", "ours", "note"]
CONFIGS = {"isr.yaml": ISRConfig, "vae_stage1.yaml": VAETransferConfig, "vae_stage2.yaml": VAETransferConfig,
           "vae_t1.yaml": VAETransferConfig, "vae_t2.yaml": VAETransferConfig, "degradation:realesrgan": None}
# keys that name files, folders or logging, not the method
NOT_SETTINGS = {"sd_model", "vae_d4", "decoder_from", "prompt.ram_weights", "inference_prompt.ram_weights",
                "data.val_hr", "data.val_lr", "data.val_dir", "data.num_val", "train.run_name", "train.num_workers",
                "train.log_every", "train.val_every", "train.ckpt_every", "train.keep_last"}


def _rows() -> list[dict]:
    rows, header = [], None
    for line in DOC.read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set(line) <= set("|-: ") or header != HEADER:
            continue
        assert len(cells) == len(HEADER), f"malformed row in {DOC.name}: {line}"
        rows.append(dict(zip(HEADER, cells)))
    return rows


def _literal(cell: str):
    """The documented value, with ${data:...}/${weights:...} resolved as the config loader resolves them."""
    value = yaml.safe_load(cell.strip().strip("`"))
    return OmegaConf.to_container(OmegaConf.create({"v": value}), resolve=True)["v"]


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0)
    return a == b


def _path(name: str) -> Path:
    return config_path(name.split(":", 1)[1]) if name.startswith("degradation:") else ROOT / "configs" / name


def _load(name: str):
    cfg = load_degradation_config(_path(name)) if CONFIGS[name] is None else load_config(CONFIGS[name], _path(name))
    return OmegaConf.structured(cfg)


ROWS = _rows()


def test_the_table_is_there_and_covers_every_stage():
    configs = {r["config"] for r in ROWS}
    assert len(ROWS) > 150 and set(CONFIGS) <= configs
    assert {"TVTPipeline()", "TVTPipeline.__call__", "code"} <= configs
    for r in ROWS:
        assert r["paper"] or r["config"].startswith("degradation:"), f"row '{r['setting']}' has no paper cell"
        assert r["official release"], f"row '{r['setting']}' has no official-release cell"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_paper_scale_configs_match_the_table(name):
    cfg = _load(name)
    rows = [r for r in ROWS if r["config"] == name]
    for r in rows:
        key = r["key"].strip("`")
        value = OmegaConf.select(cfg, key, default="<missing>")
        value = OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
        assert _same(value, _literal(r["ours"])), f"{name}: {key} = {value!r}, docs/fidelity.md says {r['ours']}"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_method_setting_of_a_paper_scale_config_has_a_row(name):
    raw = OmegaConf.load(_path(name))
    leaves = {k for k in _leaf_keys(OmegaConf.to_container(raw)) if k not in NOT_SETTINGS}
    documented = {r["key"].strip("`") for r in ROWS if r["config"] == name}
    assert leaves <= documented, f"{name}: settings without a row in docs/fidelity.md: {sorted(leaves - documented)}"


def _leaf_keys(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaf_keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def test_inference_defaults_match_the_table():
    signatures = {"TVTPipeline()": inspect.signature(TVTPipeline.__init__),
                  "TVTPipeline.__call__": inspect.signature(TVTPipeline.__call__)}
    for r in (r for r in ROWS if r["config"] in signatures):
        key = r["key"].strip("`")
        default = signatures[r["config"]].parameters[key].default
        assert _same(default, _literal(r["ours"])), f"{r['config']} {key} = {default!r}, docs say {r['ours']}"


def test_code_references_exist():
    for r in (r for r in ROWS if r["config"] == "code"):
        path = r["key"].strip("`").split(".")
        for i in range(len(path), 0, -1):  # the longest importable module prefix, then attributes
            try:
                obj = importlib.import_module(".".join(path[:i]))
                break
            except ModuleNotFoundError:
                continue
        for attr in path[i:]:
            assert hasattr(obj, attr), f"docs/fidelity.md names {r['key']}, which does not exist"
            obj = getattr(obj, attr)
