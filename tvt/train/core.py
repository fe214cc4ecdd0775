"""The one training loop shared by every stage (VAE stage 1/2, ablations, one-step ISR).

A stage is a small class: it builds its models, optimizers and data in ``setup``, computes its losses
and calls ``accelerator.backward`` in ``train_step`` (so GAN and VSD stages can run two optimizers),
and writes its deliverable in ``export``. The Trainer owns everything else:

- accelerate: CPU, one or many GPUs/nodes (``accelerate launch``), fp16/bf16, gradient accumulation;
- steps are OPTIMIZER steps (``max_steps``), never micro-batches;
- numbered run folders ``runs/003-<name>/`` with the resolved config, tensorboard logs, ``metrics.jsonl``;
- checkpoints ``checkpoints/checkpoint-<step>/`` = accelerate state (safetensors models, optimizers,
  schedulers, RNG) + ``trainer_state.json``, written to a temp folder and renamed, keep-last-K;
- exact resume: the data stream is a pure function of (seed, sample position), so a run resumed from
  step k sees the same batches as an uninterrupted one;
- a non-finite loss never reaches the weights: the step is skipped and counted, or the run halts.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import ConfigError, load_config, to_yaml

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
    num_workers: int = 0
    log_every: int = 10
    val_every: int = 0  # 0: no validation during training
    ckpt_every: int = 500
    keep_last: int = 3
    resume: Optional[str] = None  # None | "latest" | run folder | checkpoint folder
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
    gains ``position`` (unique over the run: the degradation seeds its randomness with it).
    """

    def __init__(self, base: Dataset, seed: int):
        self.base, self.seed, self.n = base, seed, len(base)
        if self.n == 0:
            raise ValueError("the training dataset is empty")
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
        return item


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


def make_dataloader(dataset: Dataset, cfg: TrainConfig, accelerator, start_batch: int = 0) -> DataLoader:
    sampler = PositionSampler(cfg.batch_size, accelerator.process_index, accelerator.num_processes, start_batch)
    return DataLoader(PositionDataset(dataset, cfg.seed), batch_size=cfg.batch_size, sampler=sampler,
                      num_workers=cfg.num_workers, drop_last=True, persistent_workers=cfg.num_workers > 0)


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
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters for the optimizer")
    kwargs = dict(lr=effective_lr(cfg, lr), betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay)
    if cfg.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ImportError("train.use_8bit_adam=true needs bitsandbytes: pip install bitsandbytes") from None
        return bnb.optim.AdamW8bit(params, **kwargs)
    return torch.optim.AdamW(params, **kwargs)


def make_scheduler(optimizer, cfg: TrainConfig):
    from diffusers.optimization import get_scheduler

    return get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.lr_warmup_steps,
                         num_training_steps=cfg.max_steps)


# ---------------------------------------------------------------------------------------------
# Stage interface
# ---------------------------------------------------------------------------------------------
class Stage:
    """Base class of a training stage. Subclasses set ``Config`` (a dataclass with a ``train: TrainConfig``)."""

    Config: type = None
    name: str = "stage"

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

    def train_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        """Compute losses, call ``self.accelerator.backward``; return named scalars to log."""
        raise NotImplementedError

    def validate(self, step: int, run_dir: Path) -> dict[str, float]:
        return {}

    def export(self, folder: Path) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# Run folders and checkpoints
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------
class NonFiniteLossError(RuntimeError):
    pass


class Trainer:
    def __init__(self, stage: Stage):
        self.stage, self.cfg = stage, stage.cfg
        self.tcfg: TrainConfig = stage.cfg.train

    def fit(self) -> Path:
        from accelerate import Accelerator, PartialState
        from accelerate.utils import ProjectConfiguration, set_seed
        from tqdm.auto import tqdm

        t = self.tcfg
        if t.nonfinite not in ("halt", "skip"):
            raise ConfigError(f"train.nonfinite must be 'halt' or 'skip', got '{t.nonfinite}'")
        resume = resolve_resume(t)
        # Without CUDA, accelerate only recognises a multi-process (torchrun / accelerate launch) job when told cpu=True.
        cpu = t.cpu or not torch.cuda.is_available()
        run_dir = self._run_dir(PartialState(cpu=cpu), resume)
        accelerator = Accelerator(cpu=cpu, gradient_accumulation_steps=t.grad_accum, mixed_precision=t.mixed_precision,
                                  log_with=None if t.tracker == "none" else t.tracker,
                                  project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir / "logs")))
        set_seed(t.seed)
        self.stage.accelerator = accelerator
        self.stage.setup(accelerator)
        for sch in self.stage.schedulers:
            accelerator.register_for_checkpointing(sch)

        step, skipped = 0, 0
        if resume:
            state = json.loads((resume[1] / "trainer_state.json").read_text())
            step, skipped = state["step"], state["nonfinite_skipped"]
        loader = make_dataloader(self.stage.train_dataset, t, accelerator, start_batch=(step + skipped) * t.grad_accum)
        batches = iter(loader)  # before load_state: creating the iterator draws from the global RNG
        if resume:
            accelerator.load_state(str(resume[1]))
            log.info("resumed from %s at step %d", resume[1], step)
        if accelerator.is_main_process and t.tracker != "none":
            accelerator.init_trackers(self.stage.name)
        bar = tqdm(total=t.max_steps, initial=step, desc=self.stage.name, disable=not accelerator.is_main_process)
        metrics_file = run_dir / "metrics.jsonl"
        while step < t.max_steps:
            logs, bad, bad_any = {}, [], False
            for _ in range(t.grad_accum):
                batch = _to_device(next(batches), accelerator.device)
                with accelerator.accumulate(*self.stage.trainable_modules()):
                    logs = self.stage.train_step(batch, step)
                    bad = bad or [k for k, v in logs.items() if not torch.isfinite(torch.as_tensor(v, dtype=torch.float32)).all()]
                    flag = torch.tensor(float(bool(bad)), device=accelerator.device)
                    bad_any = bad_any or bool(accelerator.reduce(flag, "max").item())
                    if not bad_any:
                        if accelerator.sync_gradients and t.max_grad_norm > 0:
                            for opt in self.stage.optimizers:
                                accelerator.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], t.max_grad_norm)
                        for opt in self.stage.optimizers:
                            opt.step()  # accelerate's wrapper steps only when gradients are synced
                    for opt in self.stage.optimizers:
                        opt.zero_grad(set_to_none=True)  # at a sync point also drops a poisoned accumulation
            if bad_any:
                skipped += 1
                msg = f"non-finite loss at step {step}: {bad or 'on another process'}"
                if t.nonfinite == "halt" or skipped > t.max_nonfinite:
                    raise NonFiniteLossError(msg + " (halting; set train.nonfinite=skip to skip such steps)")
                log.warning("%s; step skipped (%d so far)", msg, skipped)
                continue  # the skipped micro-batches are consumed: fresh data next, not a retry
            for sch in self.stage.schedulers:  # schedules are in optimizer steps, so not prepared by accelerate
                sch.step()
            step += 1
            bar.update(1)
            scalars = {k: float(v) for k, v in logs.items()}
            scalars["lr"] = self.stage.optimizers[0].param_groups[0]["lr"]
            if accelerator.is_main_process:
                with metrics_file.open("a") as f:
                    f.write(json.dumps({"step": step, **scalars}) + "\n")
            if step % t.log_every == 0 or step == t.max_steps:
                accelerator.log(scalars, step=step)
                bar.set_postfix({k: f"{v:.4g}" for k, v in list(scalars.items())[:4]})
            if t.val_every and (step % t.val_every == 0 or step == t.max_steps):
                val = self.stage.validate(step, run_dir)
                if val:
                    accelerator.log({f"val/{k}": v for k, v in val.items()}, step=step)
                    if accelerator.is_main_process:
                        with (run_dir / "val.jsonl").open("a") as f:
                            f.write(json.dumps({"step": step, **val}) + "\n")
            if step % t.ckpt_every == 0 or step == t.max_steps:
                self.save_checkpoint(accelerator, run_dir, step, skipped)
        bar.close()
        accelerator.wait_for_everyone()
        if t.export and accelerator.is_main_process:
            self.stage.export(run_dir / "export")
        accelerator.wait_for_everyone()
        accelerator.end_training()
        self.run_dir = run_dir
        return run_dir

    def _run_dir(self, accelerator, resume) -> Path:
        if resume:
            return resume[0]
        out = Path(self.tcfg.output_dir)
        if accelerator.is_main_process:
            run_dir = new_run_dir(out, self.tcfg.run_name)
            (run_dir / "config.yaml").write_text(to_yaml(self.cfg))
        accelerator.wait_for_everyone()
        return _run_dirs(out, self.tcfg.run_name)[-1]

    def save_checkpoint(self, accelerator, run_dir: Path, step: int, skipped: int) -> Path:
        """accelerate state into checkpoint-<step>.tmp, then renamed: a crash never leaves a partial checkpoint."""
        final = run_dir / "checkpoints" / f"checkpoint-{step}"
        tmp = final.with_name(final.name + ".tmp")
        if accelerator.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=True)
        if accelerator.is_main_process:
            (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "nonfinite_skipped": skipped}))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in checkpoints(run_dir)[: -self.tcfg.keep_last] if self.tcfg.keep_last > 0 else []:
                shutil.rmtree(old)
        accelerator.wait_for_everyone()
        return final


def _to_device(batch: Any, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


# ---------------------------------------------------------------------------------------------
# Entry point used by every scripts/train_*.py
# ---------------------------------------------------------------------------------------------
def main(stage_cls: type[Stage], argv: list[str] | None = None) -> Path:
    """``python scripts/train_x.py --config configs/x.yaml key=value ...``"""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: {Path(sys.argv[0]).name} --config CONFIG.yaml [key=value ...]\n\n{stage_cls.__doc__ or ''}")
        raise SystemExit(0)
    config = None
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise SystemExit("--config needs a path")
        config = argv[i + 1]
        del argv[i:i + 2]
    try:
        cfg = load_config(stage_cls.Config, config, argv)
    except ConfigError as err:
        raise SystemExit(f"error: {err}") from None
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_dir = Trainer(stage_cls(cfg)).fit()
    print(f"run folder: {run_dir}")
    return run_dir
