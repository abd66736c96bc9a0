"""In-memory batch loading: a dataset indexed by whole index tensors and a seeded batch sampler.

The loader is resumable: its ``state_dict`` records the epoch and how many batches of it were
read, and after ``load_state_dict`` the next iteration continues at the following batch (the
``state_dict``/``load_state_dict`` interface Lightning saves in a checkpoint's loop state).
"""

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

    ``state_dict()`` is (epoch, batches read by the current iteration); after ``load_state_dict``
    the next iteration skips the batches already read, then later ones start from the first.
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
        self._read = 0  # batches the current iteration has yielded
        self._skip = 0  # batches the next iteration leaves out (set by load_state_dict)

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
        first, self._skip = self._skip, 0
        self._read = first
        for start in range(first * self.batch_size, len(self) * self.batch_size, self.batch_size):
            self._read += 1
            yield mine[start:start + self.batch_size]

    def state_dict(self) -> dict[str, int]:
        """Where the current iteration is: its epoch and the number of batches it has yielded."""
        return {"epoch": self.epoch, "batches": self._read}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from ``state``: the next iteration starts after its ``batches``."""
        batches = int(state["batches"])
        if not 0 <= batches <= len(self):
            raise TaskError(f"the saved loader position, batch {batches}, is outside this loader's "
                            f"{len(self)} batches; resume with the data the run was started with")
        self.epoch = int(state["epoch"])
        self._skip = batches


class ResumableLoader(DataLoader):
    """A DataLoader over a :class:`ShuffledBatchSampler` that saves and restores its position."""

    def state_dict(self) -> dict[str, int]:
        """The sampler's position (see :meth:`ShuffledBatchSampler.state_dict`)."""
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue at the batch after ``state``'s."""
        self.sampler.load_state_dict(state)


def make_loader(images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, shuffle: bool,
                seed: int, drop_last: bool, reshuffle: bool = True) -> ResumableLoader:
    """DataLoader yielding (images, labels) batches straight from memory (batch_size=None)."""
    sampler = ShuffledBatchSampler(len(labels), batch_size, shuffle=shuffle, seed=seed,
                                   drop_last=drop_last, reshuffle=reshuffle)
    return ResumableLoader(TensorBatchDataset(images, labels), batch_size=None, sampler=sampler)
