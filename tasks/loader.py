"""In-memory batch loading: a dataset indexed by whole index tensors and a seeded batch sampler."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from tasks.errors import TaskError
from tasks.seeding import seeded_generator


class TensorBatchDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images and labels in memory; indexing with an index tensor returns a whole batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if len(images) != len(labels):
            raise TaskError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


class ShuffledBatchSampler(Sampler[torch.Tensor]):
    """Yields int64 index tensors, one per batch; the order depends only on (seed, epoch).

    With ``reshuffle=False`` the seeded order ignores the epoch: evaluation uses one fixed
    permutation, so any prefix of it (a limited evaluation) is a uniform sample whatever the
    source order, and the same on every epoch, after a resume and on every rank.

    Under torch.distributed (or with explicit num_replicas/rank) each rank takes a disjoint,
    equally long slice of the epoch's order; the few items that do not divide evenly are skipped.
    """

    def __init__(self, num_items: int, batch_size: int, *, shuffle: bool, seed: int,
                 drop_last: bool, reshuffle: bool = True, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        if batch_size < 1 or seed < 0 or num_items < 0:
            raise TaskError(f"batch_size must be >= 1 and seed, num_items >= 0; "
                            f"got {batch_size}, {seed}, {num_items}")
        if not 0 <= rank < num_replicas:
            raise TaskError(f"rank {rank} is outside [0, num_replicas={num_replicas})")
        self.num_items = num_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.reshuffle = reshuffle
        self.seed = seed
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration produces."""
        self.epoch = epoch

    def _per_rank(self) -> int:
        return self.num_items // self.num_replicas

    def __len__(self) -> int:
        rounding = math.floor if self.drop_last else math.ceil
        return rounding(self._per_rank() / self.batch_size)

    def _order(self) -> torch.Tensor:
        """All item indices in this epoch's order (the same for every epoch without reshuffle)."""
        if not self.shuffle:
            return torch.arange(self.num_items)
        epoch = self.epoch if self.reshuffle else 0
        return torch.randperm(self.num_items, generator=seeded_generator(self.seed, epoch))

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = self._order()
        per_rank = self._per_rank()
        mine = order[self.rank * per_rank:(self.rank + 1) * per_rank]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield mine[start:start + self.batch_size]


def make_loader(images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, shuffle: bool,
                seed: int, drop_last: bool, reshuffle: bool = True) -> DataLoader:
    """DataLoader yielding (images, labels) batches straight from memory (batch_size=None)."""
    sampler = ShuffledBatchSampler(len(labels), batch_size, shuffle=shuffle, seed=seed,
                                   drop_last=drop_last, reshuffle=reshuffle)
    return DataLoader(TensorBatchDataset(images, labels), batch_size=None, sampler=sampler)
