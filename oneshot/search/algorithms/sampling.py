"""Seeded draws shared by sampling algorithms: every process draws the same architecture."""

from __future__ import annotations

from typing import Mapping

import torch

from supernets.mixed import SparseRow
from tasks.seeding import seeded_generator


def step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    """The CPU generator of draw ``stream`` of step ``step`` in a run seeded ``seed``: the same on
    every process and after a resume; ``stream`` tells apart the draws of one step."""
    return seeded_generator(seed, step, stream)


def one_hot_rows(indices: Mapping[str, int], sizes: Mapping[str, int],
                 device: torch.device | str | None = None) -> dict[str, SparseRow]:
    """Per label, a row that runs only candidate ``indices[label]``, with weight exactly 1."""
    rows = {}
    for label, index in indices.items():
        weights = torch.zeros(sizes[label], device=device)
        weights[index] = 1.0
        rows[label] = SparseRow(weights, (index,))
    return rows
