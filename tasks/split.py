"""Seeded split of a training set into the weight half and the architecture half of a search."""

from __future__ import annotations

import torch

from tasks.errors import TaskError
from tasks.seeding import seeded_generator


def search_split(n: int, seed: int, subset: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return int64 indices (weight_idx, arch_idx): disjoint halves of a seeded permutation.

    Each half stays in its seeded random order (not sorted), so any prefix of it is a uniform
    sample of the training images even when they are stored class by class. With `subset`,
    only `subset` seeded training images of the `n` are used; the weight half gets floor(half)
    and the architecture half the rest.
    """
    size = n if subset is None else subset
    if subset is not None and not 2 <= subset <= n:
        raise TaskError(f"subset={subset} is out of range; choose 2 <= subset <= {n} "
                        f"(the number of training images)")
    if size < 2:
        raise TaskError(f"a search split needs at least 2 training images, got {n}")
    order = torch.randperm(n, generator=seeded_generator(seed))[:size]
    half = size // 2
    return order[:half], order[half:]
