"""The NAS-Bench-201 macro network shared by the search and derived networks.

A 3x3 convolution stem (with BatchNorm) to ``channels``, then three stages of ``layers`` cells
at ``channels``, ``2 * channels`` and ``4 * channels``, with a :class:`ResidualReduction`
(stride 2) between stages; BatchNorm, ReLU, global average pooling and a linear classifier.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from supernets.errors import SpaceError
from supernets.nb201.ops import ResidualReduction


def check_positive(what: str, **options: Any) -> None:
    """Raise SpaceError unless every option is an integer >= 1."""
    for option, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpaceError(f"{what} option {option} must be an integer >= 1, got {value!r}")


class Nb201Skeleton(nn.Module):
    """Stem, ``3 * layers`` cells from ``make_cell(channels)`` in three stages, classifier.

    ``forward_cells(x, *cell_args)`` runs every cell as ``cell(x, *cell_args)``.
    """

    def __init__(self, make_cell: Callable[[int], nn.Module], *, num_classes: int, channels: int,
                 layers: int, in_channels: int) -> None:
        super().__init__()
        check_positive("NAS-Bench-201 network", num_classes=num_classes, channels=channels,
                       layers=layers, in_channels=in_channels)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels))
        self.cells = nn.ModuleList()
        c_prev = channels
        for stage in range(3):
            c = channels * 2 ** stage
            if stage:
                self.cells.append(ResidualReduction(c_prev, c))
            self.cells.extend(make_cell(c) for _ in range(layers))
            c_prev = c
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward_cells(self, x: torch.Tensor, *cell_args: Any) -> torch.Tensor:
        """Class logits, passing ``cell_args`` to every cell (not to the reduction blocks)."""
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x) if isinstance(cell, ResidualReduction) else cell(x, *cell_args)
        return self.classifier(self.global_pooling(self.lastact(x)).flatten(1))
