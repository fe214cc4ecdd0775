"""The interface of a training stage: what the Trainer (tvt.train.trainer) calls, in order."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import torch
from torch.utils.data import Dataset


class Stage:
    """Base class of a training stage. Subclasses set ``Config`` (a dataclass with a ``train: TrainConfig``)."""

    Config: type = None
    name: str = "stage"
    run_inputs: tuple[str, ...] = ()  # config keys naming an earlier run's export: they accept latest:<run_name>
    optimizer_names: tuple[str, ...] = ()  # what each optimizer trains, for messages (default: optimizer k)

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

    def train_step(self, batch: dict, step: int) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """Yield ``(loss, logs)`` for each optimizer in ``self.optimizers``' order (the k-th loss trains the k-th
        optimizer; a stage may stop early, e.g. a discriminator not trained yet); logs are named scalars to log.

        The Trainer backpropagates each loss as it is yielded, and on the step's last micro-batch also updates that
        optimizer (clip, step), before the stage computes the next loss: the official order (TVT train.py:210-227:
        the generator's backward, clip, step, then the fake score's), and Lightning's for LDM's two optimizers. A
        later loss must therefore not backpropagate into an earlier optimizer's parameters (detach what it reads)."""
        raise NotImplementedError

    def after_optimizer_step(self) -> None:
        """Called after every optimizer step taken (not after skipped ones): EMA updates go here."""

    def validate(self, step: int, run_dir: Path) -> dict[str, float]:
        return {}

    def export(self, folder: Path) -> None:
        pass
