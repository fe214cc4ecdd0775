"""The one training loop shared by every stage (VAE stage 1/2, ablations, one-step ISR).

A stage is a small class: it builds its models, optimizers and data in ``setup``, computes its losses
and calls ``accelerator.backward`` in ``train_step`` (so GAN and VSD stages can run two optimizers),
and writes its deliverable in ``export``. The Trainer owns everything else:

- accelerate: CPU, one or many GPUs/nodes (``accelerate launch``), fp16/bf16, gradient accumulation;
- steps are OPTIMIZER steps (``max_steps``), never micro-batches; logged values are means over the
  step's micro-batches and processes;
- numbered run folders ``runs/003-<name>/`` with the resolved config, tensorboard logs, ``metrics.jsonl``;
  a run that fails before its first checkpoint leaves no folder behind;
- a stage's input may name an earlier run by stage: ``vae_d4=latest:vae_stage2`` is the export of the
  newest finished ``runs/NNN-vae_stage2`` (``resolve_run_path``);
- checkpoints ``checkpoints/checkpoint-<step>/`` = accelerate state (safetensors models, optimizers,
  schedulers, RNG) + ``trainer_state.json`` (step, file sizes), written to a temp folder and renamed,
  keep-last-K; a damaged checkpoint is refused with a CheckpointError naming the file;
- exact resume (``train.resume=latest``): the data stream is a pure function of (seed, sample position),
  so a run resumed from step k sees the same batches as an uninterrupted one, and its metrics rows
  after step k are replaced, not repeated;
- per-sample work off the critical path: a stage's ``sample_transform`` (the ISR degradation) runs on each
  item in the DataLoader workers (``train.num_workers``), seeded by the item's position, so the data does not
  depend on the number of workers; every step logs how long it waited for data (``data_wait``, seconds, and
  ``data_wait_share`` of the step);
- a non-finite loss never reaches the weights: the step is skipped and counted, or the run halts.

Memory helpers for stages with large frozen models: ``store_frozen_weights`` (frozen Linear/Conv weights in the
mixed-precision dtype, where autocast computes them anyway), ``memory_by_category``; AdamW is fused on CUDA.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import ConfigError, to_yaml
from ..errors import InputError, TVTError

log = logging.getLogger("tvt.train")


@dataclass
class TrainConfig:
    output_dir: str = "runs"
    run_name: str = "run"
    seed: int = 0
    max_steps: int = 1000  # optimizer steps
    batch_size: int = 4  # per process, per micro-batch
    grad_accum: int = 1
    mixed_precision: str = "no"  # no | fp16 | bf16
    gradient_checkpointing: bool = False
    lr: float = 1e-4
    scale_lr: bool = False  # LDM main.py --scale_lr: optimizer lr = lr x batch_size x processes x grad_accum
    lr_scheduler: str = "constant_with_warmup"
    lr_warmup_steps: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 0.0
    use_8bit_adam: bool = False
    max_grad_norm: float = 1.0  # <= 0 disables clipping
    num_workers: int = 0  # DataLoader worker processes: loading, cropping and the stage's per-sample transform
    log_every: int = 10
    val_every: int = 0  # 0: no validation during training
    ckpt_every: int = 500
    keep_last: int = 3
    resume: Optional[str] = None  # latest (newest run of run_name) | a run folder | a checkpoint folder
    nonfinite: str = "halt"  # halt | skip
    max_nonfinite: int = 10  # skip mode: halt after this many skipped steps
    tracker: str = "tensorboard"  # tensorboard | none
    cpu: bool = False  # force CPU even when CUDA is present (CPU is used anyway when it is not)
    export: bool = True


# ---------------------------------------------------------------------------------------------
# Data order: a pure function of (seed, position)
# ---------------------------------------------------------------------------------------------
class PositionDataset(Dataset):
    """Maps a global sample position to (epoch, index) through a seeded permutation per epoch.

    ``base[index]`` is called after ``base.set_epoch(epoch)`` when the base dataset has it, and the item
    gains ``position`` (unique over the run). ``transform(item)``, when given, then runs on the item where the
    item is made (a DataLoader worker): it must be picklable and a pure function of the item (its randomness
    seeded by ``item["position"]``), so the data stays a function of (seed, position).
    """

    def __init__(self, base: Dataset, seed: int, transform: Callable[[dict], dict] | None = None):
        self.base, self.seed, self.n, self.transform = base, seed, len(base), transform
        if self.n == 0:
            raise InputError("the training dataset is empty")
        self._perm_epoch, self._perm = -1, None

    def __len__(self) -> int:  # positions are unbounded; the sampler decides which to read
        return sys.maxsize

    def __getitem__(self, position: int) -> dict:
        epoch, offset = divmod(int(position), self.n)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=g), epoch
            if hasattr(self.base, "set_epoch"):
                self.base.set_epoch(epoch)
        item = dict(self.base[int(self._perm[offset])])
        item["position"] = int(position)
        return self.transform(item) if self.transform is not None else item


class PositionSampler(Sampler[int]):
    """Positions for one process: micro-batch k of rank r holds positions ((k * world + r) * B ...) + B."""

    def __init__(self, batch_size: int, rank: int, world: int, start_batch: int = 0):
        self.b, self.rank, self.world, self.start = batch_size, rank, world, start_batch

    def __iter__(self) -> Iterator[int]:
        k = self.start
        while True:
            first = (k * self.world + self.rank) * self.b
            yield from range(first, first + self.b)
            k += 1


def make_dataloader(dataset: Dataset, cfg: TrainConfig, accelerator, start_batch: int = 0,
                    transform: Callable[[dict], dict] | None = None) -> DataLoader:
    """Micro-batches of ``cfg.batch_size`` from micro-batch ``start_batch`` on; ``transform`` runs per item in the
    ``cfg.num_workers`` workers (in this process when 0). Pinned host memory when training on CUDA, so the copy to
    the device does not block."""
    sampler = PositionSampler(cfg.batch_size, accelerator.process_index, accelerator.num_processes, start_batch)
    return DataLoader(PositionDataset(dataset, cfg.seed, transform), batch_size=cfg.batch_size, sampler=sampler,
                      num_workers=cfg.num_workers, drop_last=True, persistent_workers=cfg.num_workers > 0,
                      pin_memory=torch.device(accelerator.device).type == "cuda")


def effective_lr(cfg: TrainConfig, lr: float | None = None, num_processes: int | None = None) -> float:
    """The optimizer lr for base lr ``lr`` (default ``cfg.lr``); under ``scale_lr`` LDM's rule (main.py):
    ``grad_accum x num_processes x batch_size x base_lr``. The number of processes is accelerate's, unless given."""
    base = lr or cfg.lr
    if not cfg.scale_lr:
        return base
    if num_processes is None:
        from accelerate import PartialState

        num_processes = PartialState().num_processes
    scaled = cfg.grad_accum * num_processes * cfg.batch_size * base
    log.info("scale_lr: lr %.3e = %d (grad_accum) x %d (processes) x %d (batch_size) x %.2e (base lr)",
             scaled, cfg.grad_accum, num_processes, cfg.batch_size, base)
    return scaled


def make_optimizer(params, cfg: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW over the trainable ``params``: fused (one kernel for all parameters) when every one is a float
    tensor on CUDA, torch's default implementation otherwise (CPU); 8-bit with ``cfg.use_8bit_adam``."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters for the optimizer")
    kwargs = dict(lr=effective_lr(cfg, lr), betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay)
    if cfg.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ConfigError("train.use_8bit_adam=true needs bitsandbytes: pip install bitsandbytes") from None
        return bnb.optim.AdamW8bit(params, **kwargs)
    if all(p.is_cuda and p.is_floating_point() for p in params):
        kwargs["fused"] = True
    return torch.optim.AdamW(params, **kwargs)


def make_scheduler(optimizer, cfg: TrainConfig):
    from diffusers.optimization import get_scheduler

    return get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.lr_warmup_steps,
                         num_training_steps=cfg.max_steps)


# ---------------------------------------------------------------------------------------------
# Memory: frozen weights in the compute dtype, bytes by category
# ---------------------------------------------------------------------------------------------
AUTOCAST_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # autocast runs these in the compute dtype


def compute_dtype(accelerator) -> torch.dtype:
    """The dtype autocast computes in: float16 / bfloat16 under fp16 / bf16 mixed precision, else float32."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(str(accelerator.mixed_precision), torch.float32)


def store_frozen_weights(module: nn.Module, dtype: torch.dtype) -> int:
    """Store the frozen weights and biases of ``module``'s Linear/Conv layers in ``dtype``, in place; returns the
    bytes this frees. Trainable parameters (LoRA, fully trained layers) keep their fp32 master weights.

    Under autocast these layers compute in ``dtype`` whatever their weights' dtype: autocast would round each
    fp32 weight to ``dtype`` at every call, so storing the rounded copy once gives the same numbers with half the
    memory (and no cast kernels). Norm and embedding layers, which autocast does not cast (or runs in fp32), stay
    as they are: a fraction of a percent of a UNet's weights. No-op for float32."""
    freed = 0
    if dtype == torch.float32:
        return freed
    for layer in module.modules():
        if not isinstance(layer, AUTOCAST_LAYERS):
            continue
        for p in layer.parameters(recurse=False):
            if not p.requires_grad and p.is_floating_point() and p.dtype != dtype:
                freed += p.numel() * (p.element_size() - torch.finfo(dtype).bits // 8)
                p.data = p.data.to(dtype)
    return freed


def memory_by_category(modules: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer] = ()) -> dict[str, int]:
    """Bytes held by ``modules`` and ``optimizers``: ``trainable`` parameters, their ``gradients`` (as allocated
    now), ``frozen`` parameters (all dtypes; ``frozen_<dtype>`` per dtype) and ``optimizer_state``. A parameter
    shared by several modules counts once."""
    out = {"trainable": 0, "gradients": 0, "frozen": 0, "optimizer_state": 0}
    seen: set[int] = set()
    for module in modules:
        for p in module.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            size = p.numel() * p.element_size()
            if p.requires_grad:
                out["trainable"] += size
                out["gradients"] += 0 if p.grad is None else p.grad.numel() * p.grad.element_size()
            else:
                out["frozen"] += size
                key = f"frozen_{str(p.dtype).removeprefix('torch.')}"
                out[key] = out.get(key, 0) + size
    for opt in optimizers:
        for state in opt.state.values():
            out["optimizer_state"] += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    return out


# ---------------------------------------------------------------------------------------------
# Stage interface
# ---------------------------------------------------------------------------------------------
class Stage:
    """Base class of a training stage. Subclasses set ``Config`` (a dataclass with a ``train: TrainConfig``)."""

    Config: type = None
    name: str = "stage"
    run_inputs: tuple[str, ...] = ()  # config keys naming an earlier run's export: they accept latest:<run_name>

    def __init__(self, cfg):
        self.cfg = cfg
        self.accelerator = None
        self.optimizers: list = []
        self.schedulers: list = []
        self.train_dataset: Dataset | None = None

    def setup(self, accelerator) -> None:
        """Build models, call ``accelerator.prepare`` on trainable ones, fill optimizers/schedulers/train_dataset."""
        raise NotImplementedError

    def trainable_modules(self) -> list[torch.nn.Module]:
        raise NotImplementedError

    def frozen_modules(self) -> list[torch.nn.Module]:
        """Every model of the step, frozen ones included (memory accounting, benchmarks); default: the trainable."""
        return self.trainable_modules()

    def sample_transform(self) -> Callable[[dict], dict] | None:
        """A per-sample transform run where each item is made (the DataLoader workers), on the item with its
        ``position``; None: the items arrive as the dataset makes them. It is pickled to the workers, so it should
        hold only what it needs (not the stage), and be a pure function of the item (exact resume)."""
        return None

    def train_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        """Compute losses, call ``self.accelerator.backward``; return named scalars to log."""
        raise NotImplementedError

    def after_optimizer_step(self) -> None:
        """Called after every optimizer step taken (not after skipped ones): EMA updates go here."""

    def validate(self, step: int, run_dir: Path) -> dict[str, float]:
        return {}

    def export(self, folder: Path) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# Run folders and checkpoints
# ---------------------------------------------------------------------------------------------
class CheckpointError(TVTError):
    """A checkpoint cannot be resumed from: a file is missing, truncated or does not fit the config."""


def _run_dirs(output_dir: Path, name: str) -> list[Path]:
    pattern = re.compile(rf"^(\d{{3,}})-{re.escape(name)}$")
    found = [p for p in output_dir.glob(f"*-{name}") if p.is_dir() and pattern.match(p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-", 1)[0]))


def new_run_dir(output_dir: Path, name: str) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name.split("-", 1)[0]) for p in output_dir.iterdir() if p.is_dir() and p.name[:3].isdigit()]
    run_dir = output_dir / f"{max(numbers, default=-1) + 1:03d}-{name}"
    run_dir.mkdir()
    return run_dir


def resolve_run_path(value: str | None, output_dir: str | Path) -> str | None:
    """``latest:<run_name>`` -> the ``export`` folder of the newest finished ``<output_dir>/NNN-<run_name>``;
    any other value is returned as given. So the next stage names its input by stage, not by run number."""
    if not value or not value.startswith("latest:"):
        return value
    name = value[len("latest:"):]
    finished = [run / "export" for run in _run_dirs(Path(output_dir), name) if (run / "export").is_dir()]
    if not finished:
        raise ConfigError(f"{value}: no finished run '{name}' (a {output_dir}/NNN-{name}/export folder)")
    return str(finished[-1])


def checkpoints(run_dir: Path) -> list[Path]:
    ckpts = [p for p in (run_dir / "checkpoints").glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return sorted(ckpts, key=lambda p: int(p.name.split("-")[-1]))


def resolve_resume(cfg: TrainConfig) -> tuple[Path, Path] | None:
    """(run folder, checkpoint folder) to resume from, or None for a fresh run."""
    if not cfg.resume:
        return None
    if cfg.resume == "latest":
        runs = [r for r in _run_dirs(Path(cfg.output_dir), cfg.run_name) if checkpoints(r)]
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


def _drop_rows_after(path: Path, step: int) -> None:
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


def _append_jsonl(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------
class NonFiniteLossError(TVTError, RuntimeError):
    pass


class Trainer:
    """Runs a Stage: ``fit`` is the loop; ``start`` and ``optimizer_step`` are its parts, public for benchmarks."""

    def __init__(self, stage: Stage):
        self.stage, self.cfg = stage, stage.cfg
        self.tcfg: TrainConfig = stage.cfg.train
        self.accelerator, self.bar = None, None
        self.run_dir: Path | None = None
        self.new_run, self.is_main = False, True
        self.step, self.skipped = 0, 0  # optimizer steps taken, steps skipped for a non-finite loss

    def fit(self) -> Path:
        """Train to ``train.max_steps`` optimizer steps; returns the run folder."""
        try:
            batches = self.start()
            while self.step < self.tcfg.max_steps:
                logs = self.optimizer_step(batches)
                if logs is None:  # non-finite loss: step skipped
                    continue
                self.step += 1
                self.log_validate_checkpoint(logs)
            self.finish()
        except BaseException:  # Ctrl-C included: say where the run stands, then let it propagate unchanged
            self.stop()
            raise
        return self.run_dir

    # -- the loop's parts --------------------------------------------------------------------
    def start(self) -> Iterator[dict]:
        """Run folder, accelerator, the stage's models and data, the resumed state; returns the micro-batch stream."""
        from accelerate import Accelerator, PartialState
        from accelerate.utils import ProjectConfiguration, set_seed
        from tqdm.auto import tqdm

        t, stage = self.tcfg, self.stage
        self._check_config()
        resume = resolve_resume(t)
        state = read_checkpoint(resume[1]) if resume else {"step": 0, "nonfinite_skipped": 0}
        # Without CUDA, accelerate only recognises a multi-process (torchrun / accelerate launch) job when told cpu=True.
        cpu = t.cpu or not torch.cuda.is_available()
        processes = PartialState(cpu=cpu)
        self.is_main = processes.is_main_process
        self.run_dir = resume[0] if resume else self._new_run_dir(processes)
        acc = self.accelerator = Accelerator(
            cpu=cpu, gradient_accumulation_steps=t.grad_accum, mixed_precision=t.mixed_precision,
            log_with=None if t.tracker == "none" else t.tracker,
            project_config=ProjectConfiguration(project_dir=str(self.run_dir), logging_dir=str(self.run_dir / "logs")))
        self.step, self.skipped = state["step"], state["nonfinite_skipped"]
        acc.print(f"run folder: {self.run_dir}" + (f" (resuming from {resume[1].name})" if resume else ""))
        set_seed(t.seed)
        stage.accelerator = acc
        stage.setup(acc)
        for sch in stage.schedulers:
            acc.register_for_checkpointing(sch)
        batches = self.batches((self.step + self.skipped) * t.grad_accum)  # before load_state: it draws from the RNG
        if resume:
            self._load_state(resume[1], state)
        if acc.is_main_process and t.tracker != "none":
            acc.init_trackers(stage.name)
        self.bar = tqdm(total=t.max_steps, initial=self.step, desc=stage.name, disable=not acc.is_main_process)
        return batches

    def batches(self, start_batch: int = 0) -> Iterator[dict]:
        """The micro-batch stream from micro-batch ``start_batch`` on, on the training device (the workers start
        here: creating the iterator draws their base seed from the global RNG)."""
        loader = make_dataloader(self.stage.train_dataset, self.tcfg, self.accelerator, start_batch,
                                 self.stage.sample_transform())
        device = self.accelerator.device
        return (_to_device(batch, device) for batch in loader)

    def optimizer_step(self, batches: Iterator[dict]) -> dict[str, float] | None:
        """One optimizer step from ``grad_accum`` micro-batches: their logs averaged, or None if it was skipped.

        The logs end with ``data_wait``: seconds this process waited for its micro-batches (loader and copy to the
        device), and ``data_wait_share``: that time over the whole step's."""
        acc, t, stage = self.accelerator, self.tcfg, self.stage
        micro, wait, start = [], 0.0, time.perf_counter()
        for _ in range(t.grad_accum):
            asked = time.perf_counter()
            batch = next(batches)
            wait += time.perf_counter() - asked
            with acc.accumulate(*stage.trainable_modules()):  # gradients are all-reduced on the last one only
                micro.append(stage.train_step(batch, self.step))
        logs = self._mean(micro)
        bad = [k for k, v in logs.items() if not math.isfinite(v)]
        if bad:  # on any process: the window's gradients are dropped, its data consumed (fresh data next)
            self._zero_grad()
            self._skip_or_halt(bad)
            return None
        if t.max_grad_norm > 0:
            for opt in stage.optimizers:
                acc.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], t.max_grad_norm)
        logs["lr"] = stage.optimizers[0].param_groups[0]["lr"]  # the lr of this update
        for opt in stage.optimizers:
            opt.step()
        for sch in stage.schedulers:  # they count optimizer steps, so they are not prepared by accelerate
            sch.step()
        self._zero_grad()
        stage.after_optimizer_step()
        logs["data_wait"] = wait
        logs["data_wait_share"] = wait / max(time.perf_counter() - start, 1e-9)
        return logs

    def log_validate_checkpoint(self, logs: dict[str, float]) -> None:
        acc, t, step = self.accelerator, self.tcfg, self.step
        last = step == t.max_steps
        self.bar.update(1)
        if acc.is_main_process:
            _append_jsonl(self.run_dir / "metrics.jsonl", {"step": step, **logs})
        if step % t.log_every == 0 or last:
            acc.log(logs, step=step)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in list(logs.items())[:4]})
        if t.val_every and (step % t.val_every == 0 or last):
            val = self.stage.validate(step, self.run_dir)
            if val:
                acc.log({f"val/{k}": v for k, v in val.items()}, step=step)
                if acc.is_main_process:
                    _append_jsonl(self.run_dir / "val.jsonl", {"step": step, **val})
        if step % t.ckpt_every == 0 or last:
            self.save_checkpoint()

    def finish(self) -> None:
        """The stage's export (written beside, then renamed into ``export/``), trackers closed, folder printed."""
        acc = self.accelerator
        self.bar.close()
        acc.wait_for_everyone()
        if self.tcfg.export and acc.is_main_process:
            final = self.run_dir / "export"
            tmp = final.with_name("export.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            self.stage.export(tmp)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        acc.wait_for_everyone()
        acc.end_training()
        acc.print(f"run folder: {self.run_dir} (finished at step {self.step})")

    def stop(self) -> None:
        """After an error or Ctrl-C: one line on what is left; a new run without a checkpoint is removed."""
        if self.bar is not None:
            self.bar.close()
        if self.accelerator is not None:
            for tracker in self.accelerator.trackers:
                with contextlib.suppress(Exception):  # the error being raised is the one to see
                    tracker.finish()
        if self.run_dir is None or not self.is_main:
            return
        last = checkpoints(self.run_dir)
        if last:
            print(f"run folder: {self.run_dir} (stopped at step {self.step}; train.resume={self.run_dir} continues "
                  f"from {last[-1].name})", file=sys.stderr)
        elif self.new_run:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            print(f"removed {self.run_dir}: the run stopped before its first checkpoint", file=sys.stderr)

    def save_checkpoint(self) -> Path:
        """accelerate state into checkpoint-<step>.tmp, then renamed: a crash never leaves a partial checkpoint.
        trainer_state.json lists every file's size, so a truncated copy is caught on resume."""
        acc = self.accelerator
        final = self.run_dir / "checkpoints" / f"checkpoint-{self.step}"
        tmp = final.with_name(final.name + ".tmp")
        if acc.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        acc.wait_for_everyone()  # every process's RNG file is written
        if acc.is_main_process:
            files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
            state = {"step": self.step, "nonfinite_skipped": self.skipped, "num_processes": acc.num_processes,
                     "files": files}
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in checkpoints(self.run_dir)[: -self.tcfg.keep_last] if self.tcfg.keep_last > 0 else []:
                shutil.rmtree(old)
        acc.wait_for_everyone()
        return final

    # -- helpers -----------------------------------------------------------------------------
    def _check_config(self) -> None:
        t = self.tcfg
        if t.nonfinite not in ("halt", "skip"):
            raise ConfigError(f"train.nonfinite must be 'halt' or 'skip', got '{t.nonfinite}'")
        if t.mixed_precision not in ("no", "fp16", "bf16"):  # YAML reads a bare `no` as false
            raise ConfigError(f"train.mixed_precision must be 'no' (quoted), 'fp16' or 'bf16', "
                              f"got '{t.mixed_precision}'")
        for key in self.stage.run_inputs:  # resolved before config.yaml is written: the run records the real path
            value = getattr(self.cfg, key)
            setattr(self.cfg, key, resolve_run_path(value, t.output_dir))
            if getattr(self.cfg, key) != value:
                log.info("%s=%s: %s", key, value, getattr(self.cfg, key))

    def _new_run_dir(self, processes) -> Path:
        out, name = Path(self.tcfg.output_dir), self.tcfg.run_name
        self.new_run = True
        if processes.is_main_process:
            run_dir = new_run_dir(out, name)
            (run_dir / "config.yaml").write_text(to_yaml(self.cfg))
        processes.wait_for_everyone()
        return _run_dirs(out, name)[-1]

    def _load_state(self, ckpt: Path, state: dict) -> None:
        acc = self.accelerator
        try:
            acc.load_state(str(ckpt))
        except Exception as err:  # most often a config that builds other models than the checkpoint holds
            raise CheckpointError(f"cannot resume from {ckpt}: {str(err).strip().splitlines()[0]}") from err
        saved = state.get("num_processes", acc.num_processes)
        if saved != acc.num_processes:
            log.warning("%s was saved by %d processes, resumed by %d: the data order differs from an uninterrupted run",
                        ckpt, saved, acc.num_processes)
        if acc.is_main_process:
            for name in ("metrics.jsonl", "val.jsonl"):
                _drop_rows_after(self.run_dir / name, self.step)

    def _mean(self, micro: list[dict]) -> dict[str, float]:
        """Each log's mean over the micro-batches and the processes (one all-reduce); NaN and inf stay."""
        keys, device = list(micro[0]), self.accelerator.device
        values = torch.stack([torch.stack([torch.as_tensor(m[k], device=device).detach().float().mean() for k in keys])
                              for m in micro]).mean(0)
        return dict(zip(keys, self.accelerator.reduce(values, "mean").tolist()))

    def _zero_grad(self) -> None:
        for opt in self.stage.optimizers:
            opt.zero_grad(set_to_none=True)

    def _skip_or_halt(self, bad: list[str]) -> None:
        self.skipped += 1
        msg = f"non-finite {', '.join(bad)} at step {self.step + 1}"
        if self.tcfg.nonfinite == "halt" or self.skipped > self.tcfg.max_nonfinite:
            raise NonFiniteLossError(f"{msg}: halting (train.nonfinite=skip skips such steps, up to "
                                     "train.max_nonfinite)")
        log.warning("%s: step skipped (%d so far)", msg, self.skipped)


def _to_device(batch: Any, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch
