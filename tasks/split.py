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


def fit_subset(subset: int | None, at_most: int | None, n: int) -> tuple[int | None, str | None]:
    """The number of training images to use, and a note when a preset's cap was dropped.

    An explicit `subset` is kept as given (checked against `n` where it is used, so one larger
    than the data stays an error). Otherwise `at_most` (a preset's cap, e.g. experiment=quick's)
    caps the data: it gives `at_most` when there are more than `at_most` images, else None (all
    `n`) with a one-line note saying so.
    """
    if subset is not None or at_most is None:
        return subset, None
    if at_most < n:
        return at_most, None
    return None, (f"note: the preset's task.subset_at_most={at_most} is not below the {n} "
                  f"training images; using all {n}")
