"""The data order: a pure function of (seed, sample position), so a run resumed from step k sees the same
batches as an uninterrupted one, whatever the number of DataLoader workers."""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import InputError
from .train_config import TrainConfig

EPOCH_SEED_STRIDE = 100_003  # a prime: epoch e of run seed s is permuted with seed s * stride + e, distinct over runs


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
            g = torch.Generator().manual_seed(self.seed * EPOCH_SEED_STRIDE + epoch)
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



def to_device(batch: Any, device):
    """A batch (tensors, dicts of them, anything else) on ``device``; copies from pinned memory do not block."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch
