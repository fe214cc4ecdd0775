"""Run folders: numbered ``<output_dir>/NNN-<run_name>/`` with the resolved config, logs and ``metrics.jsonl``, and
``latest:<run_name>``, by which a stage (or an inference command) names the export of the newest finished run."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import ConfigError

LATEST = "latest:"


def run_dirs(output_dir: Path, name: str) -> list[Path]:
    """The run folders ``NNN-<name>`` under ``output_dir``, oldest first."""
    pattern = re.compile(rf"^(\d{{3,}})-{re.escape(name)}$")
    found = [p for p in output_dir.glob(f"*-{name}") if p.is_dir() and pattern.match(p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[0]))


def new_run_dir(output_dir: Path, name: str, attempts: int = 1000) -> Path:
    """Create ``<output_dir>/NNN-<name>`` with the next free number and return it. ``mkdir`` is atomic, so of runs
    started together each gets its own folder: one that finds its number taken meanwhile tries the next."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(attempts):
        numbers = [int(p.name.split("-", 1)[0]) for p in output_dir.iterdir() if p.is_dir() and p.name[:3].isdigit()]
        run_dir = output_dir / f"{max(numbers, default=-1) + 1:03d}-{name}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:  # another run made it between our listing and our mkdir
            continue
    raise RuntimeError(f"no free run number in {output_dir} after {attempts} attempts")


def resolve_run_path(value: str | None, output_dir: str | Path) -> str | None:
    """``latest:<run_name>`` -> the ``export`` folder of the newest finished ``<output_dir>/NNN-<run_name>``;
    any other value is returned as given. So the next stage names its input by stage, not by run number."""
    if not value or not value.startswith(LATEST):
        return value
    name = value[len(LATEST):]
    finished = [run / "export" for run in run_dirs(Path(output_dir), name) if (run / "export").is_dir()]
    if not finished:
        raise ConfigError(f"{value}: no finished run '{name}' (a {output_dir}/NNN-{name}/export folder)")
    return str(finished[-1])


def drop_rows_after(path: Path, step: int) -> None:
    """Keep the rows of a jsonl log up to ``step``: a resumed run writes the later ones again."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):  # a line cut short by the interruption
            pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def append_jsonl(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
