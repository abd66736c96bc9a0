"""Partial channel connections (PC-DARTS, Xu et al., 2020): an edge mixes 1/K of its channels.

:func:`partial_edge` builds an edge's :class:`~supernets.choices.OpChoice` on ``C / K``
channels and wraps it in a :class:`PartialChannels`: the first ``C / K`` channels go through
the mix, the other channels bypass it (max-pooled on a stride-2 edge), and the two parts are
concatenated and channel-shuffled with ``K`` groups, so that the next edge mixes other channels.
The candidates hold ``1 / K`` of the weights and keep ``1 / K`` of the activations, which is
where the memory saving comes from.

A space offers it with a ``partial_channels`` constructor option (``darts`` and ``nb201`` do)
that it hands to :func:`partial_edge`. Inside :func:`~supernets.choices.fixed_architecture`
the option is ignored: the fixed network of a genotype is the ordinary one.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from supernets.choices import OpChoice, building_fixed_network
from supernets.errors import SpaceError
from supernets.memory_format import memory_format_of
from supernets.mixed import ArchRow, SparseRow


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` equal blocks of ``n`` channels: channel ``g * n + i`` moves to
    ``i * groups + g``."""
    b, c, h, w = x.shape
    shuffled = x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)
    return shuffled.contiguous(memory_format=memory_format_of(x))


def row_total(row: ArchRow) -> torch.Tensor:
    """The sum of a row's weights: 1 for a softmax, the edge weight for an edge-weighted one."""
    return (row.weights if isinstance(row, SparseRow) else row).sum()


class PartialChannels(nn.Module):
    """An :class:`OpChoice` built on ``1 / groups`` of the edge's channels, the rest bypassing it.

    ``forward(x, row)`` is ``shuffle(cat(choice(x[:, :C/K], row), total * bypass(x[:, C/K:])))``
    where ``total`` is the sum of the row's weights: 1 for a softmax row, and the edge's weight
    for a row scaled by an edge weight (edge normalization), which then weights the whole edge
    as in PC-DARTS.
    """

    def __init__(self, choice: OpChoice, groups: int, stride: int) -> None:
        super().__init__()
        self.choice = choice
        self.groups = groups
        self.bypass: nn.Module = nn.MaxPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()

    @property
    def label(self) -> str:
        """The label of the wrapped choice."""
        return self.choice.label

    def row(self) -> ArchRow:
        """The wrapped choice's row of the architecture the supernet is running."""
        return self.choice.row()

    def forward(self, x: torch.Tensor, row: ArchRow | None = None) -> torch.Tensor:
        row = self.choice.row() if row is None else row
        mixed_channels = x.shape[1] // self.groups
        # a copy of the mixed channels, laid out as x, so that its candidates read whole maps
        part = x[:, :mixed_channels].contiguous(memory_format=memory_format_of(x))
        mixed = self.choice(part, row)
        bypass = self.bypass(x[:, mixed_channels:]) * row_total(row)
        return channel_shuffle(torch.cat([mixed, bypass], dim=1), self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


def check_partial_channels(partial_channels: object) -> int:
    """``partial_channels`` as an integer >= 1, else a :class:`SpaceError`."""
    if isinstance(partial_channels, bool) or not isinstance(partial_channels, int) \
            or partial_channels < 1:
        raise SpaceError(f"partial_channels must be an integer >= 1 (1: every channel is mixed), "
                         f"got {partial_channels!r}")
    return partial_channels


def partial_edge(make_choice: Callable[[int], OpChoice], channels: int, partial_channels: int,
                 stride: int = 1) -> nn.Module:
    """``make_choice(channels)``, or with ``partial_channels`` K > 1 a :class:`PartialChannels`
    around ``make_choice(channels // K)``.

    ``make_choice(c)`` builds the edge's choice with candidates of ``c`` channels (``stride`` is
    the candidates' stride, which the bypass matches). Building a fixed network, K is ignored.
    """
    k = check_partial_channels(partial_channels)
    if k == 1 or building_fixed_network():
        return make_choice(channels)
    if channels % k:
        raise SpaceError(f"partial_channels={k} must divide every edge's channels, but an edge "
                         f"has {channels}; choose channels divisible by {k}")
    return PartialChannels(make_choice(channels // k), k, stride)
