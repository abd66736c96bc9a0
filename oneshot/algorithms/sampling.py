"""Seeded draws shared by sampling algorithms: every process draws the same architecture."""

from __future__ import annotations

import hashlib
from typing import Mapping

import torch

from supernets.mixed import SparseRow


def step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    """A CPU generator seeded from a hash of ``(seed, step, stream)``; ``stream`` tells apart the
    draws of one step.

    Hashed because the CPU generator keeps only the low 32 bits of its seed: packing the three
    numbers into one integer would make the upper ones (the run's seed) have no effect.
    """
    digest = hashlib.blake2b(f"{seed}/{step}/{stream}".encode(), digest_size=4).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


def one_hot_rows(indices: Mapping[str, int], sizes: Mapping[str, int],
                 device: torch.device | str | None = None) -> dict[str, SparseRow]:
    """Per label, a row that runs only candidate ``indices[label]``, with weight exactly 1."""
    rows = {}
    for label, index in indices.items():
        weights = torch.zeros(sizes[label], device=device)
        weights[index] = 1.0
        rows[label] = SparseRow(weights, (index,))
    return rows
