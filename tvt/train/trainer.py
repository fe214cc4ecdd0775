"""The Trainer: the one training loop shared by every stage (VAE stage 1/2, ablations, one-step ISR).

A stage is a small class: it builds its models, optimizers and data in ``setup``, yields one loss per optimizer
from ``train_step`` (GAN and VSD stages run two), and writes its deliverable in ``export``. The Trainer owns
everything else:

- accelerate: CPU, one or many GPUs/nodes (``accelerate launch``), fp16/bf16, gradient accumulation;
- steps are OPTIMIZER steps (``max_steps``), never micro-batches; logged values are means over the
  step's micro-batches and processes;
- numbered run folders ``runs/003-<name>/`` with the resolved config, tensorboard logs, ``metrics.jsonl``,
  created atomically (runs started together get one each); a run that fails, or is stopped by Ctrl-C or SIGTERM,
  before its first checkpoint leaves no folder behind; SIGTERM after it saves a final checkpoint first;
- a stage's input may name an earlier run by stage: ``vae_d4=latest:vae_stage2`` is the export of the
  newest finished ``runs/NNN-vae_stage2`` (``resolve_run_path``);
- checkpoints ``checkpoints/checkpoint-<step>/`` (tvt.train.checkpoints), keep-last-K; a damaged checkpoint is
  refused with a CheckpointError naming the file;
- exact resume (``train.resume=latest``): the data stream is a pure function of (seed, sample position),
  so a run resumed from step k sees the same batches as an uninterrupted one, and its metrics rows
  after step k are replaced, not repeated;
- per-sample work off the critical path: a stage's ``sample_transform`` (the ISR degradation) runs on each
  item in the DataLoader workers (``train.num_workers``), seeded by the item's position, so the data does not
  depend on the number of workers; every step logs how long it waited for data (``data_wait``, seconds, and
  ``data_wait_share`` of the step);
- each optimizer is updated right after its loss's backward, the official order (tvt.train.update: under fp16 its
  gradients are unscaled exactly once, and the loss scaler updated once per step);
- a non-finite loss never reaches the weights: the step is skipped and counted, or the run halts; under fp16 a
  step whose gradients the loss scaler finds inf/NaN in is skipped, logged and counted too (``scaler_skipped``).

Its parts, one module each in tvt.train: train_config, data_order, optim, update, precision, memory, stage, runs
(run folders, ``latest:``), checkpoints.
"""
from __future__ import annotations

import contextlib
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Iterator

import torch

from ..config import check_ranges, to_yaml
from ..errors import ConfigError, NonFiniteLossError
from ..io import atomic_dir
from ..signals import Terminated, TerminationRequest
from .checkpoints import checkpoints, load_checkpoint, read_checkpoint, resolve_resume, write_checkpoint
from .data_order import make_dataloader, to_device
from .runs import append_jsonl, drop_rows_after, new_run_dir, resolve_run_path
from .stage import Stage
from .train_config import TrainConfig
from .update import OptimizerUpdates

log = logging.getLogger("tvt.train")
MAX_SCALER_SKIPS_IN_A_ROW = 30  # the loss scale has then fallen by 2^30: the gradients are inf/NaN at any scale


class Trainer:
    """Runs a Stage: ``fit`` is the loop; ``start`` and ``optimizer_step`` are its parts, public for benchmarks."""

    def __init__(self, stage: Stage):
        self.stage, self.cfg = stage, stage.cfg
        self.tcfg: TrainConfig = stage.cfg.train
        self.accelerator, self.bar = None, None
        self.run_dir: Path | None = None
        self.new_run, self.is_main = False, True
        self.step, self.skipped = 0, 0  # optimizer steps taken, steps skipped for a non-finite loss
        self.last_checkpoint_step: int | None = None  # the step of this run's newest checkpoint
        self.scaler_skipped, self._scaler_skips_in_a_row = 0, 0  # steps the fp16 loss scaler skipped (inf/NaN grads)

    def fit(self) -> Path:
        """Train to ``train.max_steps`` optimizer steps; returns the run folder.

        SIGTERM (a scheduler ending the job) is handled as Ctrl-C is, at the next step boundary: after the first
        checkpoint a final one is saved at the current step, then Terminated (a KeyboardInterrupt) propagates."""
        with TerminationRequest() as term:
            try:
                batches = self.start()
                term.defer = True  # in the loop: stop at a step boundary, where the state is whole
                while self.step < self.tcfg.max_steps:
                    if self._terminate_requested(term):
                        self._final_checkpoint()
                        raise Terminated()
                    logs = self.optimizer_step(batches)
                    if logs is None:  # non-finite loss or fp16 inf/NaN gradients: step skipped
                        continue
                    self.step += 1
                    self.log_validate_checkpoint(logs)
                term.defer = False
                self.finish()
            except BaseException:  # Ctrl-C and SIGTERM included: say where the run stands, then propagate unchanged
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
        self.last_checkpoint_step = state["step"] if resume else None
        self.scaler_skipped = state.get("scaler_skipped", 0)
        if acc.is_main_process:
            log.info("run folder: %s%s", self.run_dir, f" (resuming from {resume[1].name})" if resume else "")
        set_seed(t.seed)
        stage.accelerator = acc
        stage.setup(acc)
        mix = getattr(stage.train_dataset, "mix", None)  # each source's share of an epoch (tvt.data.mix)
        if acc.is_main_process and mix is not None:
            log.info("%s", mix.describe())
        for sch in stage.schedulers:
            acc.register_for_checkpointing(sch)
        batches = self.batches(self.windows_consumed() * t.grad_accum)  # before load_state: it draws from the RNG
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
        return (to_device(batch, device) for batch in loader)

    def optimizer_step(self, batches: Iterator[dict]) -> dict[str, float] | None:
        """One optimizer step from ``grad_accum`` micro-batches: their logs averaged, or None if it was skipped.

        Each loss the stage yields (one per optimizer, in its order) is backpropagated at once; on the last
        micro-batch its optimizer is then updated (clipped, stepped: tvt.train.update) before the stage computes
        the next loss, the official order (TVT train.py:210-227). An optimizer whose loss is non-finite, or whose
        fp16 gradients hold inf/NaN, keeps its weights while the others update (torch's GradScaler decides per
        optimizer); the step then counts as skipped. The logs end with the ``lr`` of this update, ``loss_scale``
        (fp16 loss scaling only), ``data_wait``: seconds this process waited for its micro-batches (loader and
        copy to the device), and ``data_wait_share``: that time over the whole step's."""
        acc, t, stage = self.accelerator, self.tcfg, self.stage
        micro, logs, wait, start = [[] for _ in stage.optimizers], {}, 0.0, time.perf_counter()
        updates, nonfinite, overflow = OptimizerUpdates(acc, t.max_grad_norm), [], []
        lr = stage.optimizers[0].param_groups[0]["lr"]  # the lr of this update
        for i in range(t.grad_accum):
            asked = time.perf_counter()
            batch = next(batches)
            wait += time.perf_counter() - asked
            with acc.accumulate(*stage.trainable_modules()):  # gradients are all-reduced on the last one only
                for k, (loss, out) in enumerate(self._losses(batch)):
                    acc.backward(loss)
                    micro[k].append(out)
                    if i < t.grad_accum - 1:
                        continue
                    means = self._mean(micro[k])  # this optimizer's last backward of the step: update it now
                    logs.update(means)
                    bad = [name for name, v in means.items() if not math.isfinite(v)]
                    if bad:  # on any process: its gradients are dropped, its data consumed (fresh data next)
                        stage.optimizers[k].zero_grad(set_to_none=True)
                        nonfinite += bad
                    elif not updates.take(stage.optimizers[k]):
                        overflow.append(self._optimizer_name(k))
        updates.finish()
        if nonfinite:
            self._skip_or_halt(nonfinite)
            return None
        if overflow:
            self._scaler_skip(overflow, updates.scale)
            return None
        self._scaler_skips_in_a_row = 0
        for sch in stage.schedulers:  # they count optimizer steps, so they are not prepared by accelerate
            sch.step()
        stage.after_optimizer_step()
        logs["lr"] = lr
        if updates.scale is not None:
            logs["loss_scale"] = updates.scale
        logs["data_wait"] = wait
        logs["data_wait_share"] = wait / max(time.perf_counter() - start, 1e-9)
        return logs

    def windows_consumed(self) -> int:
        """Optimizer steps' worth of micro-batch windows read so far: taken and skipped ones."""
        return self.step + self.skipped + self.scaler_skipped

    def log_validate_checkpoint(self, logs: dict[str, float]) -> None:
        acc, t, step = self.accelerator, self.tcfg, self.step
        last = step == t.max_steps
        self.bar.update(1)
        if acc.is_main_process:
            append_jsonl(self.run_dir / "metrics.jsonl", {"step": step, **logs})
        if step % t.log_every == 0 or last:
            acc.log(logs, step=step)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in list(logs.items())[:4]})
        if t.val_every and (step % t.val_every == 0 or last):
            val = self.stage.validate(step, self.run_dir)
            if val:
                acc.log({f"val/{k}": v for k, v in val.items()}, step=step)
                if acc.is_main_process:
                    append_jsonl(self.run_dir / "val.jsonl", {"step": step, **val})
        if step % t.ckpt_every == 0 or last:
            self.save_checkpoint()

    def finish(self) -> None:
        """The stage's export (written beside, then renamed into ``export/``), trackers closed, folder printed."""
        acc = self.accelerator
        self.bar.close()
        acc.wait_for_everyone()
        if self.tcfg.export and acc.is_main_process:
            with atomic_dir(self.run_dir / "export") as tmp:  # readable like the rest of the run (0644 files)
                self.stage.export(tmp)
        acc.wait_for_everyone()
        acc.end_training()
        if acc.is_main_process:
            log.info("run folder: %s (finished at step %d)", self.run_dir, self.step)

    def stop(self) -> None:
        """After an error, Ctrl-C or SIGTERM: one line on what is left; a new run without a checkpoint is removed."""
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
            log.warning("run folder: %s (stopped at step %d; train.resume=%s continues from %s)", self.run_dir,
                        self.step, self.run_dir, last[-1].name)
        elif self.new_run:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            log.warning("removed %s: the run stopped before its first checkpoint", self.run_dir)

    def save_checkpoint(self) -> Path:
        """checkpoint-<step> of this run (tvt.train.checkpoints.write_checkpoint), keep-last-K."""
        final = write_checkpoint(self.accelerator, self.run_dir, self.step, self.tcfg.keep_last,
                                 nonfinite_skipped=self.skipped, scaler_skipped=self.scaler_skipped)
        self.last_checkpoint_step = self.step
        return final

    # -- helpers -----------------------------------------------------------------------------
    def _terminate_requested(self, term: TerminationRequest) -> bool:
        """Whether any process got SIGTERM: all stop at the same step, or the others would wait for it forever."""
        if self.accelerator.num_processes == 1:
            return term.requested
        flag = torch.tensor([float(term.requested)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, "sum").item() > 0)

    def _final_checkpoint(self) -> None:
        """A checkpoint at the current step, once the run has one (before that, the run folder is removed)."""
        done = self.last_checkpoint_step
        if done is not None and self.step > done:
            self.save_checkpoint()

    def _check_config(self) -> None:
        check_ranges(self.cfg)  # configs built in Python skip load_config's check
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
        """The folder this run creates (never a newer one another run made meanwhile), told to every process."""
        out, name = Path(self.tcfg.output_dir), self.tcfg.run_name
        self.new_run = True
        made = [None]
        if processes.is_main_process:
            made[0] = str(new_run_dir(out, name))
            (Path(made[0]) / "config.yaml").write_text(to_yaml(self.cfg))
        if processes.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(made)
        return Path(made[0])

    def _load_state(self, ckpt: Path, state: dict) -> None:
        load_checkpoint(self.accelerator, ckpt, state)
        if self.accelerator.is_main_process:
            for name in ("metrics.jsonl", "val.jsonl"):
                drop_rows_after(self.run_dir / name, self.step)

    def _mean(self, micro: list[dict]) -> dict[str, float]:
        """Each log's mean over the micro-batches and the processes (one all-reduce); NaN and inf stay."""
        keys, device = list(micro[0]), self.accelerator.device
        values = torch.stack([torch.stack([torch.as_tensor(m[k], device=device).detach().float().mean() for k in keys])
                              for m in micro]).mean(0)
        return dict(zip(keys, self.accelerator.reduce(values, "mean").tolist()))

    def _losses(self, batch: dict):
        """The stage's (loss, logs) per optimizer for ``batch``, checked against the Stage interface."""
        losses = self.stage.train_step(batch, self.step)
        if isinstance(losses, dict):
            raise TypeError(f"{type(self.stage).__name__}.train_step returned its logs: it must yield (loss, logs) "
                            "per optimizer and leave backward to the Trainer (tvt.train.stage.Stage.train_step)")
        for k, item in enumerate(losses):
            if k >= len(self.stage.optimizers):
                raise TypeError(f"{type(self.stage).__name__}.train_step yielded more losses than its "
                                f"{len(self.stage.optimizers)} optimizers")
            yield item

    def _optimizer_name(self, k: int) -> str:
        names = self.stage.optimizer_names
        return names[k] if k < len(names) else f"optimizer {k}"

    def _skip_or_halt(self, bad: list[str]) -> None:
        self.skipped += 1
        msg = f"non-finite {', '.join(bad)} at step {self.step + 1}"
        if self.tcfg.nonfinite == "halt" or self.skipped > self.tcfg.max_nonfinite:
            raise NonFiniteLossError(f"{msg}: halting (train.nonfinite=skip skips such steps, up to "
                                     "train.max_nonfinite)")
        log.warning("%s: step skipped (%d so far)", msg, self.skipped)

    def _scaler_skip(self, names: list[str], scale: float) -> None:
        """fp16 loss scaling found inf/NaN gradients: usual while the scaler seeks its scale (it halves it), so
        logged and counted, not halting, unless it goes on: then the gradients are not finite at any scale."""
        self.scaler_skipped += 1
        self._scaler_skips_in_a_row += 1
        msg = (f"inf/NaN gradients of the {' and the '.join(names)} at step {self.step + 1} with loss scale "
               f"{scale:g}: update skipped")
        if self._scaler_skips_in_a_row > MAX_SCALER_SKIPS_IN_A_ROW:
            raise NonFiniteLossError(f"{msg}, {self._scaler_skips_in_a_row} steps in a row: the gradients are not "
                                     "finite at any loss scale")
        log.warning("%s, the scale halved (%d such steps so far)", msg, self.scaler_skipped)

