"""Configs: a dataclass schema, filled from a YAML file and command-line overrides (OmegaConf structured configs).

One grammar for every command and for notebooks:

    cfg = load_config(ISRConfig, ["--config", "configs/isr.yaml", "train.lr=1e-4", "--train.max_steps", "10"])

    --config FILE            YAML file (keys as in the schema); ``_base_: other.yaml`` in it (relative to it)
                             loads that file first and this one over it (configs/ablations/ are such files)
    key=value                any key, dotted for nested ones (train.lr=1e-4, data.sources=[a,b])
    --key value, --key=value the same (dashes in names may be underscores: --tile-size = tile_size=)
    --flag                   true, for a boolean key
    --key a --key b          a list key: [a, b] (key=[a,b] also works)
    -x value                 a short alias the command declares (e.g. -i for input)
    value                    appended to the command's positional list key, if it declares one
    -h, --help               HelpRequested, whose text lists every key with its type, default and comment

Paths written ``${data:RealSR/HR}`` / ``${weights:DAPE.pth}`` / ``${samples:DRealSR/HR}`` are relative to the
data root (``TVT_DATA``), the weights root (``TVT_WEIGHTS``) or the bundled samples (tvt.roots).
An unknown or mistyped key, or a value of the wrong type, raises ConfigError naming it; so does a number outside
the range its schema field declares (``ranged``), before any work starts.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError
from .roots import data_root, samples_root, weights_root

T = TypeVar("T")

def _data_path(rel: str = "") -> str:
    return str(data_root() / rel)


def _samples_path(rel: str = "") -> str:
    return str(samples_root() / rel)


def _weights_path(rel: str = "") -> str:
    return str(weights_root() / rel)


# ${data:RealSR/HR} / ${weights:DAPE.pth} / ${samples:RealSR} in any config: that path under the data root,
# the weights root, or the repository's bundled samples
OmegaConf.register_resolver("data", _data_path, replace=True)
OmegaConf.register_resolver("samples", _samples_path, replace=True)
OmegaConf.register_resolver("weights", _weights_path, replace=True)

__all__ = ["ConfigError", "HelpRequested", "load_config", "to_yaml", "config_help", "ranged", "check_ranges"]
RANGE = "tvt_range"  # field metadata key: (min, max), either None for no bound


class HelpRequested(Exception):
    """``-h``/``--help`` was given; ``str(exc)`` is the help text."""


def load_config(schema: type[T], argv: Sequence[str] | str | Path | None = (), overrides: Sequence[str] = (), *,
                aliases: dict[str, str] | None = None, positional: str | None = None, doc: str = "",
                prog: str = "") -> T:
    """Schema defaults <- ``--config`` YAML <- overrides, as a typed dataclass instance (see the module docstring).

    ``load_config(schema, path, overrides)`` (a YAML path, then ``key=value`` strings) is the same as
    ``load_config(schema, ["--config", path, *overrides])``.
    """
    if argv is None or isinstance(argv, (str, Path)):
        argv = (["--config", str(argv)] if argv is not None else []) + list(overrides)
    path, dotlist = _parse(schema, list(argv), aliases or {}, positional, doc, prog)
    return _build(schema, path, dotlist)


def _parse(schema, argv: list[str], aliases: dict[str, str], positional: str | None, doc: str, prog: str):
    leaves = list(_leaves(schema))
    bools = {k for k, t, _, _ in leaves if t is bool}
    lists = {k for k, t, _, _ in leaves if t is list or typing.get_origin(t) is list}
    path, dotlist, rest, appended = None, [], [], {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok in ("-h", "--help"):
            raise HelpRequested(config_help(schema, doc, prog, aliases, positional))
        if tok.startswith("-") and not _is_number(tok):
            name, eq, value = tok.partition("=")
            key = aliases.get(name) or name.lstrip("-").replace("-", "_")
            if not eq:
                if key in bools and (i >= len(argv) or argv[i].startswith("-") or "=" in argv[i]):
                    value = "true"
                elif i < len(argv):
                    value, i = argv[i], i + 1
                else:
                    raise ConfigError(f"option {name} needs a value")
            if key == "config":
                if path is not None:
                    raise ConfigError("--config given twice")
                path = value
            elif key in lists and not value.startswith("["):  # --key a --key b -> key=[a, b]
                appended.setdefault(key, []).append(value)
            else:
                dotlist.append(f"{key}={value}")
        elif "=" in tok:
            dotlist.append(tok)
        else:
            rest.append(tok)
    if rest:
        if positional is None:
            raise ConfigError(f"unexpected argument(s) {rest}: overrides look like key=value")
        appended.setdefault(positional, []).extend(rest)
    dotlist += [f"{k}=[{','.join(_quote(v) for v in vs)}]" for k, vs in appended.items()]
    return path, dotlist


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def _is_number(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


BASE_KEY = "_base_"  # a YAML naming another YAML (relative to itself) that it overrides, e.g. configs/ablations/


def _yaml_layers(path: Path, seen: tuple[Path, ...] = ()) -> list:
    """The YAML at ``path`` as merge layers: its ``_base_`` chain first (each file overriding the one it names)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" + (f" (the {BASE_KEY} of {seen[-1]})" if seen else ""))
    if path.resolve() in seen:
        raise ConfigError(f"{BASE_KEY} cycle: {' -> '.join(map(str, (*seen, path)))}")
    try:
        layer = OmegaConf.load(path)
    except Exception as err:  # a YAML syntax error: say which file and where
        raise ConfigError(f"cannot read config {path}: {str(err).splitlines()[0]}") from None
    base = layer.pop(BASE_KEY, None) if isinstance(layer, dict) or OmegaConf.is_dict(layer) else None
    if base is None:
        return [layer]
    return _yaml_layers(path.parent / str(base), (*seen, path.resolve())) + [layer]


def _build(schema: type[T], path: str | Path | None, dotlist: list[str]) -> T:
    base = OmegaConf.structured(schema)
    layers = []
    if path is not None:
        layers += _yaml_layers(Path(path))
    if dotlist:
        try:
            layers.append(OmegaConf.from_dotlist(dotlist))
        except OmegaConfBaseException as err:
            raise ConfigError(f"bad override in {dotlist}: {_describe(err)}") from None
    try:
        merged = OmegaConf.merge(base, *layers)
        OmegaConf.resolve(merged)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid config{where}: {_describe(err)}") from None
    except (ValueError, TypeError) as err:  # a schema's __post_init__ check
        raise ConfigError(str(err)) from None
    check_ranges(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------
# Numeric ranges, declared on the schema's fields
# ---------------------------------------------------------------------------------------------
def ranged(default: Any, *, min: float | None = None, max: float | None = None) -> Any:
    """A numeric schema field whose value must lie in [min, max] (None: no bound; an unset Optional passes).
    ``load_config`` checks it (``check_ranges``) and ``--help`` shows it:

        ckpt_every: int = ranged(500, min=1)  # optimizer steps between checkpoints
    """
    return dataclasses.field(default=default, metadata={RANGE: (min, max)})


def check_ranges(cfg: Any, prefix: str = "") -> None:
    """ConfigError naming the first key of the schema instance ``cfg`` (nested ones included) outside its range."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{prefix}{f.name}.")
        elif RANGE in f.metadata and value is not None:
            lo, hi = f.metadata[RANGE]
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ConfigError(f"{prefix}{f.name} must be {_range_text(lo, hi)}, got {value}")


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"between {lo} and {hi}"
    return f">= {lo}" if lo is not None else f"<= {hi}"


def _ranges(schema: type, prefix: str = "") -> dict[str, str]:
    """{dotted key: its range as text} of the ``ranged`` fields of a schema."""
    found, instance = {}, schema()
    for f in dataclasses.fields(schema):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            found.update(_ranges(type(value), f"{prefix}{f.name}."))
        elif RANGE in f.metadata:
            found[f"{prefix}{f.name}"] = _range_text(*f.metadata[RANGE])
    return found


def _describe(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or getattr(err, "key", None)
    msg = str(err).splitlines()[0]
    return f"key '{key}': {msg}" if key else msg


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML (saved into every run folder)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg) if dataclasses.is_dataclass(cfg) else cfg)


# ---------------------------------------------------------------------------------------------
# --help: every key with its type, default and the comment beside it in the schema's source
# ---------------------------------------------------------------------------------------------
def config_help(schema: type, doc: str = "", prog: str = "", aliases: dict[str, str] | None = None,
                positional: str | None = None) -> str:
    usage = f"usage: {prog or 'command'} [--config FILE] [key=value | --key value ...]"
    if positional:
        usage += f" [{positional} ...]"
    lines = [usage, ""]
    if doc:
        lines += [doc.strip(), ""]
    if aliases:
        lines += ["aliases: " + ", ".join(f"{a} = --{k}" for a, k in aliases.items()), ""]
    lines.append("keys (type, default):")
    ranges = _ranges(schema)
    rows = [(k, f"{_type_name(t)}, {d!r}" + (f", {ranges[k]}" if k in ranges else ""), c)
            for k, t, d, c in _leaves(schema)]
    width = max(len(k) for k, _, _ in rows)
    lines += [f"  {k:<{width}}  ({td})" + (f"  {c}" if c else "") for k, td, c in rows]
    return "\n".join(lines)


def _leaves(schema: type, prefix: str = ""):
    """(dotted key, type, default, comment) of every leaf field of a dataclass schema."""
    comments = _comments(schema)
    hints = typing.get_type_hints(schema)
    instance = schema()
    for f in dataclasses.fields(schema):
        t, value = hints[f.name], getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            yield from _leaves(type(value), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", _unwrap_optional(t), value, comments.get(f.name, "")


def _unwrap_optional(t):
    args = [a for a in typing.get_args(t) if a is not type(None)]
    return args[0] if typing.get_origin(t) is typing.Union and len(args) == 1 else t


def _type_name(t) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


def _comments(schema: type) -> dict[str, str]:
    """{field: the comment beside it in the class source}, base classes first so subclasses override."""
    found = {}
    for cls in reversed([c for c in schema.__mro__ if dataclasses.is_dataclass(c)]):
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        for line in source.splitlines():
            m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
            if m:
                found[m.group(1)] = m.group(2).strip()
    return found
