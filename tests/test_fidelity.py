"""docs/fidelity.md is checked against the release, not against a copy of our configs.

Every row's `ours` must be what the code does (configs loaded through their dataclasses, so defaults the YAML
does not set count; constants of `code` rows evaluated), every `match` row's `official` literal must equal it,
a `deviates` row must really differ and say why, each `ours at` must point at the line that sets it, and every
field of every paper-scale config needs a row. The row format is described at the top of docs/fidelity.md.

When configs move lines: ``python tests/test_fidelity.py --fix-lines`` rewrites the `ours at` cells.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import math
import re
import sys
import typing
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from tvt.config import load_config
from tvt.data.degradation import DegradationConfig, config_path, load_degradation_config
from tvt.inference import TVTPipeline
from tvt.train.isr import ISRConfig
from tvt.train.vae_transfer import VAETransferConfig

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "fidelity.md"
HEADER = ["setting", "paper", "official release", "official", "config", "key", "ours", "ours at", "status", "note"]
STATUSES = ("match", "deviates", "paper-only", "ours")
SCHEMAS = {"isr.yaml": ISRConfig, "vae_stage1.yaml": VAETransferConfig, "vae_stage2.yaml": VAETransferConfig,
           "ablations/vae_t1.yaml": VAETransferConfig, "ablations/vae_t2.yaml": VAETransferConfig,
           "degradation:realesrgan": DegradationConfig}
# the paper-scale configs: every field of theirs needs a row (other configs in SCHEMAS need only their own rows)
COVERED = {"isr.yaml", "vae_stage1.yaml", "vae_stage2.yaml", "ablations/vae_t1.yaml", "ablations/vae_t2.yaml",
           "degradation:realesrgan"}
SIGNATURES = {"TVTPipeline()": TVTPipeline.__init__, "TVTPipeline.__call__": TVTPipeline.__call__}
# fields that name files, folders, logging or run control, not the method
NOT_SETTINGS = {"sd_model", "vae_d4", "decoder_from", "vae_kwargs", "prompt.ram_weights", "inference_prompt.ram_weights",
                "data.val_hr", "data.val_lr", "data.val_dir", "data.num_val", "data.degradation_overrides",
                "train.output_dir", "train.run_name", "train.num_workers", "train.log_every", "train.val_every",
                "train.ckpt_every", "train.keep_last", "train.resume", "train.nonfinite", "train.max_nonfinite",
                "train.tracker", "train.cpu", "train.export"}
# fields a stage's mode never reads (tvt/train/vae_transfer.py, tvt/prompts.py)
UNUSED = {"isr.yaml": {"prompt.tags", "inference_prompt.tags", "ema_decay"},  # tags: the `fixed` extractor's; EMA off
          "vae_stage1.yaml": {"sample_posterior", "loss.kl_weight", "loss.align_weight"},  # decodes the D8 latent
          "vae_stage2.yaml": {"d8_latent", "loss.disc_start", "loss.disc_lr", "loss.disc_ndf", "loss.align_weight"},
          "ablations/vae_t1.yaml": {"d8_latent", "loss.align_weight"}, "ablations/vae_t2.yaml": {"d8_latent"}}
MISSING = object()


# ------------------------------------------------------------------------------------------------
# Reading the document
# ------------------------------------------------------------------------------------------------
def _rows() -> list[dict]:
    rows, header, lineno = [], None, 0
    for lineno, line in enumerate(DOC.read_text().splitlines(), 1):
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if header is None:
            header = cells
            continue
        if set(line) <= set("|-: ") or header != HEADER:
            continue
        assert len(cells) == len(HEADER), f"docs/fidelity.md:{lineno}: {len(cells)} cells, not {len(HEADER)}: {line}"
        rows.append(dict(zip(HEADER, cells), line=lineno))
    return rows


def _unquote(cell: str) -> str:
    cell = cell.strip()
    return cell[1:-1] if len(cell) >= 2 and cell[0] == cell[-1] == "`" else cell


def _literal(cell: str):
    """A cell's value: YAML in backticks, with ${data:...}/${weights:...} resolved as the config loader does."""
    value = yaml.safe_load(_unquote(cell).replace("\\|", "|"))
    return OmegaConf.to_container(OmegaConf.create({"v": value}), resolve=True)["v"]


def _plain(v):
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return _plain(dataclasses.asdict(v))
    if OmegaConf.is_config(v):
        return OmegaConf.to_container(v, resolve=True)
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return sorted(_plain(x) for x in v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _same(a, b) -> bool:
    a, b = _plain(a), _plain(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0)
    return a == b


ROWS = _rows()


def _configs(row) -> list[str]:
    return row["config"].replace("`", "").split()


def _key(row) -> str:
    return _unquote(row["key"])


# ------------------------------------------------------------------------------------------------
# Reading the code
# ------------------------------------------------------------------------------------------------
def _config_path(name: str) -> Path:
    return config_path(name.split(":", 1)[1]) if name.startswith("degradation:") else ROOT / "configs" / name


@functools.lru_cache(maxsize=None)
def _load(name: str):
    if name.startswith("degradation:"):
        return load_degradation_config(_config_path(name))
    return load_config(SCHEMAS[name], _config_path(name))


def _select(obj, key: str):
    for part in key.split("."):
        if isinstance(obj, dict):
            obj = obj.get(part, MISSING)
        else:
            obj = getattr(obj, part, MISSING)
        if obj is MISSING:
            return MISSING
    return obj


def _import(path: str):
    """The object at a dotted path: the longest importable module, then attributes or dict keys."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
            break
        except ModuleNotFoundError:
            continue
    else:
        raise AssertionError(f"docs/fidelity.md names {path}: no module")
    for part in parts[i:]:
        nxt = obj.get(part, MISSING) if isinstance(obj, dict) else getattr(obj, part, MISSING)
        assert nxt is not MISSING, f"docs/fidelity.md names {path}, which does not exist"
        obj = nxt
    return obj


def _is_constant(obj) -> bool:
    return isinstance(obj, (bool, int, float, str, tuple, list, dict, set, frozenset)) or obj is None


def _ours(row, config: str):
    key = _key(row)
    if config in SCHEMAS:
        return _select(_load(config), key)
    if config in SIGNATURES:
        return inspect.signature(SIGNATURES[config]).parameters[key].default
    return _import(key)


def _leaf_fields(cls, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaf_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"


def _yaml_line(path: Path, key: str) -> int | None:
    """The line (1-based) of ``key`` in a YAML file, or None when the file does not set it."""
    node = yaml.compose(path.read_text())
    for part in key.split("."):
        if not isinstance(node, yaml.MappingNode):
            return None
        found = [(k, v) for k, v in node.value if k.value == part]
        if not found:
            return None
        k, node = found[0]
    return k.start_mark.line + 1


def _field_line(cls, key: str) -> tuple[Path, int]:
    """(file, line) of the dataclass field ``key`` (nested through dataclass-typed fields)."""
    *outer, name = key.split(".")
    for part in outer:
        cls = typing.get_type_hints(cls)[part]
    for klass in cls.__mro__:
        if name in getattr(klass, "__annotations__", {}):
            lines, first = inspect.getsourcelines(klass)
            for i, text in enumerate(lines):
                if re.match(rf"\s+{name}\s*:", text):
                    return Path(inspect.getsourcefile(klass)), first + i
    raise AssertionError(f"no field {key} in {cls.__name__}")


def _code_line(path: str) -> tuple[Path, int]:
    obj, name = _import(path), path.split(".")[-1]
    if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj):
        obj = inspect.unwrap(obj)
        return Path(inspect.getsourcefile(obj)), inspect.getsourcelines(obj)[1]
    parts = path.split(".")
    for i in range(len(parts), 0, -1):  # a constant: the line that assigns it in its module
        try:
            module = importlib.import_module(".".join(parts[:i]))
            break
        except ModuleNotFoundError:
            continue
    source = Path(inspect.getsourcefile(module))
    owner = parts[i] if len(parts) > i else name
    if inspect.isclass(getattr(module, owner, None)):  # a class attribute (a dataclass field's default)
        lines, first = inspect.getsourcelines(getattr(module, owner))
        return source, first + next(k for k, text in enumerate(lines) if re.match(rf"\s+{name}\b\s*[:=]", text))
    for n, text in enumerate(source.read_text().splitlines(), 1):
        if re.match(rf"{owner}\b.*=", text):
            return source, n
    raise AssertionError(f"no assignment of {owner} in {source}")


def expected_location(row) -> str:
    """Where ours is set: the YAML line, else the dataclass field, else the signature or code."""
    config, key = _configs(row)[0], _key(row)
    if config in SCHEMAS:
        path = _config_path(config)
        line = _yaml_line(path, key)
        if line is None:
            path, line = _field_line(SCHEMAS[config], key)
    elif config in SIGNATURES:
        fn = inspect.unwrap(SIGNATURES[config])
        lines, first = inspect.getsourcelines(fn)
        path, line = Path(inspect.getsourcefile(fn)), first + next(i for i, t in enumerate(lines) if re.search(rf"\b{key}\b", t))
    else:
        path, line = _code_line(key)
    return f"{path.resolve().relative_to(ROOT)}:{line}"


# ------------------------------------------------------------------------------------------------
# The checks
# ------------------------------------------------------------------------------------------------
def test_the_table_is_well_formed_and_covers_every_stage():
    configs = {c for r in ROWS for c in _configs(r)}
    assert len(ROWS) > 150 and COVERED <= configs and {"TVTPipeline()", "TVTPipeline.__call__", "code"} <= configs
    for r in ROWS:
        where = f"docs/fidelity.md:{r['line']} ({r['setting']})"
        assert r["paper"] and r["official release"] and r["ours"], f"{where}: empty paper / official release / ours"
        assert r["status"] in STATUSES, f"{where}: status '{r['status']}' is not one of {STATUSES}"
        assert all(c in SCHEMAS or c in SIGNATURES or c == "code" for c in _configs(r)), f"{where}: config {r['config']}"
        if r["status"] in ("paper-only", "ours"):
            assert r["official"] == "-", f"{where}: a {r['status']} row has no official value ('-')"
            assert r["note"] or r["status"] == "paper-only", f"{where}: say in the note why this is our choice"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['line']}-{r['setting']}")
def test_ours_is_what_the_code_does(row):
    for config in _configs(row):
        value = _ours(row, config)
        where = f"docs/fidelity.md:{row['line']} ({config} {_key(row)})"
        assert value is not MISSING, f"{where}: no such key"
        if config == "code" and not _is_constant(value):  # behaviour: pinned by a named test
            tests = re.findall(r"tests/(test_\w+\.py)::(test_\w+)", row["note"])
            assert tests, f"{where}: a code row describing behaviour names its test as tests/test_x.py::test_name"
            for file, name in tests:
                assert re.search(rf"def {name}\(", (ROOT / "tests" / file).read_text()), f"{where}: no {file}::{name}"
        else:
            assert _same(value, _literal(row["ours"])), f"{where}: the code has {value!r}, the row says {row['ours']}"


@pytest.mark.parametrize("row", [r for r in ROWS if r["status"] in ("match", "deviates")],
                         ids=lambda r: f"{r['line']}-{r['setting']}")
def test_ours_equals_the_release_where_the_row_claims_a_match(row):
    where = f"docs/fidelity.md:{row['line']} ({row['setting']})"
    if row["status"] == "deviates":
        assert len(row["note"]) > 10, f"{where}: a deviation says why in its note"
        if row["official"] != "-":
            assert not _same(_literal(row["official"]), _literal(row["ours"])), f"{where}: official == ours: a match"
        return
    assert row["official"] not in ("-", ""), f"{where}: a match row needs the release's value in `official`"
    official = _literal(row["official"])
    for config in _configs(row):
        value = _ours(row, config)
        compare = value if config != "code" or _is_constant(value) else _literal(row["ours"])
        assert _same(compare, official), f"{where}: ours {compare!r} != official {row['official']} ({config})"


def test_ours_at_names_the_line_that_sets_it():
    wrong = []
    for r in ROWS:
        want = expected_location(r)
        if _unquote(r["ours at"]) != want:
            wrong.append(f"docs/fidelity.md:{r['line']} ({r['setting']}): ours at {r['ours at']}, it is {want}")
    assert not wrong, "\n".join(wrong[:20]) + "\n(python tests/test_fidelity.py --fix-lines rewrites them)"


@pytest.mark.parametrize("name", sorted(COVERED))
def test_every_setting_of_a_paper_scale_config_has_a_row(name):
    """Keys come from the dataclass fields, so a default the YAML does not set needs a row too."""
    fields = set(_leaf_fields(SCHEMAS[name])) - NOT_SETTINGS - UNUSED.get(name, set())
    documented = {_key(r) for r in ROWS if name in _configs(r)}
    assert fields <= documented, f"{name}: settings without a row in docs/fidelity.md: {sorted(fields - documented)}"


def _fix_lines() -> int:
    lines, fixed = DOC.read_text().splitlines(), 0
    col = HEADER.index("ours at")
    for r in ROWS:
        cells = re.split(r"(?<!\\)\|", lines[r["line"] - 1])
        want = f" `{expected_location(r)}` "
        if cells[col + 1] != want:
            cells[col + 1], fixed = want, fixed + 1
            lines[r["line"] - 1] = "|".join(cells)
    DOC.write_text("\n".join(lines) + "\n")
    return fixed


if __name__ == "__main__" and "--fix-lines" in sys.argv:
    print(f"rewrote {_fix_lines()} `ours at` cells of {DOC}")
