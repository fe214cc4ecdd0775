"""Checkpoints ``<run>/checkpoints/checkpoint-<step>/``: accelerate state (safetensors models, optimizers,
schedulers, RNG) + ``trainer_state.json`` (step, every file's size), so a damaged one is refused by name; which
one ``train.resume`` names. Written by ``write_checkpoint`` (``Trainer.save_checkpoint``)."""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ..errors import CheckpointError
from ..io import normal_permissions
from .runs import run_dirs
from .train_config import TrainConfig

log = logging.getLogger("tvt.train")


def checkpoints(run_dir: Path) -> list[Path]:
    ckpts = [p for p in (run_dir / "checkpoints").glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return sorted(ckpts, key=lambda p: int(p.name.split("-")[-1]))


def resolve_resume(cfg: TrainConfig) -> tuple[Path, Path] | None:
    """(run folder, checkpoint folder) to resume from, or None for a fresh run."""
    if not cfg.resume:
        return None
    if cfg.resume == "latest":
        runs = [r for r in run_dirs(Path(cfg.output_dir), cfg.run_name) if checkpoints(r)]
        if not runs:
            log.warning("train.resume=latest: no checkpoint of '%s' in %s, starting fresh", cfg.run_name, cfg.output_dir)
            return None
        return runs[-1], checkpoints(runs[-1])[-1]
    path = Path(cfg.resume)
    if path.name.startswith("checkpoint-") and path.is_dir():
        return path.parent.parent, path
    if path.is_dir() and checkpoints(path):
        return path, checkpoints(path)[-1]
    raise FileNotFoundError(f"train.resume={cfg.resume}: not a run folder with checkpoints nor a checkpoint folder")


def read_checkpoint(ckpt: Path) -> dict:
    """The trainer state of ``ckpt`` once every file it lists has its saved size; CheckpointError otherwise."""
    problem = _damage(ckpt)
    if problem:
        earlier = [c for c in checkpoints(ckpt.parent.parent) if _step_of(c) < _step_of(ckpt) and not _damage(c)]
        hint = f"resume from the one before with train.resume={earlier[-1]}" if earlier else "no earlier complete one"
        raise CheckpointError(f"checkpoint {ckpt} is damaged: {problem}; {hint}")
    return json.loads((ckpt / "trainer_state.json").read_text())


def _damage(ckpt: Path) -> str | None:
    try:
        state = json.loads((ckpt / "trainer_state.json").read_text())
        int(state["step"]), int(state["nonfinite_skipped"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"trainer_state.json is missing or unreadable ({err})"
    for name, size in state.get("files", {}).items():
        path = ckpt / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} were written (truncated?)"
    return None


def _step_of(ckpt: Path) -> int:
    return int(ckpt.name.split("-")[-1])


def write_checkpoint(acc, run_dir: Path, step: int, keep_last: int, **counters: int) -> Path:
    """accelerate state into checkpoint-<step>.tmp, then renamed: a crash never leaves a partial checkpoint.
    trainer_state.json = step, ``counters``, the number of processes and every file's size, so a truncated copy is
    caught on resume. Keeps the last ``keep_last`` checkpoints (<= 0: all). Called by every process."""
    final = run_dir / "checkpoints" / f"checkpoint-{step}"
    tmp = final.with_name(final.name + ".tmp")
    if acc.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    acc.wait_for_everyone()
    acc.save_state(str(tmp), safe_serialization=True)
    acc.wait_for_everyone()  # every process's RNG file is written
    if acc.is_main_process:
        files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        state = {"step": step, **counters, "num_processes": acc.num_processes, "files": files}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
        normal_permissions(tmp)  # the safetensors library writes 0600: readable like the rest of the run
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old)
    acc.wait_for_everyone()
    return final


def load_checkpoint(acc, ckpt: Path, state: dict) -> None:
    """The accelerate state of ``ckpt`` (its ``read_checkpoint`` ``state``); CheckpointError naming it when it does
    not fit, a warning when another number of processes saved it (the data order then differs)."""
    try:
        acc.load_state(str(ckpt))
    except Exception as err:  # most often a config that builds other models than the checkpoint holds
        raise CheckpointError(f"cannot resume from {ckpt}: {str(err).strip().splitlines()[0]}") from err
    saved = state.get("num_processes", acc.num_processes)
    if saved != acc.num_processes:
        log.warning("%s was saved by %d processes, resumed by %d: the data order differs from an uninterrupted run",
                    ckpt, saved, acc.num_processes)
