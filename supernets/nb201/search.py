"""The NAS-Bench-201 search network: cells of mixed edges, architecture passed to ``forward``."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from supernets.errors import SpaceError
from supernets.mixed import ArchRow, MixedOp
from supernets.nb201.genotype import Nb201Genotype, derive_nb201_genotype
from supernets.nb201.ops import NB201_OPS, create_nb201_op
from supernets.nb201.skeleton import Nb201Skeleton
from supernets.nb201.topology import NODES, edge_inputs, edge_label


class SearchCell(nn.Module):
    """A NAS-Bench-201 cell whose every edge is a :class:`MixedOp` (BatchNorms not affine)."""

    def __init__(self, c: int, candidates: Sequence[str]) -> None:
        super().__init__()
        self.inputs = edge_inputs()
        self.labels = [edge_label(k) for k in range(len(self.inputs))]
        self.edges = nn.ModuleList(
            MixedOp(candidates, lambda name: create_nb201_op(name, c, affine=False))
            for _ in self.inputs)

    def forward(self, x: torch.Tensor, arch: Mapping[str, ArchRow]) -> torch.Tensor:
        nodes = [x]
        for node in range(1, NODES):
            out = None
            for edge, label, (target, j) in zip(self.edges, self.labels, self.inputs):
                if target == node:
                    h = edge(nodes[j], arch[label])
                    out = h if out is None else out + h
            nodes.append(out)
        return nodes[-1]


class Nb201Supernet(Nb201Skeleton):
    """The NAS-Bench-201 search network (Dong & Yang, 2020): ``layers`` cells per stage.

    Choice points are ``cell/edge_0 .. cell/edge_5``, shared by every cell (see
    :mod:`supernets.nb201.topology` for which nodes each edge joins).
    """

    def __init__(self, *, num_classes: int = 10, channels: int = 16, layers: int = 5,
                 in_channels: int = 3, candidates: Sequence[str] = NB201_OPS) -> None:
        candidates = tuple(candidates)
        unknown = [name for name in candidates if name not in NB201_OPS]
        if unknown or not candidates or len(set(candidates)) != len(candidates):
            raise SpaceError(f"NAS-Bench-201 candidates must be distinct operations from: "
                             f"{', '.join(NB201_OPS)}; got {list(candidates)}")
        super().__init__(lambda c: SearchCell(c, candidates), num_classes=num_classes,
                         channels=channels, layers=layers, in_channels=in_channels)
        self.candidates = candidates

    def choice_points(self) -> dict[str, list[str]]:
        """Every choice point label with its candidate names."""
        return {edge_label(k): list(self.candidates) for k in range(len(edge_inputs()))}

    def derive(self, weights: Mapping[str, torch.Tensor]) -> Nb201Genotype:
        """The genotype of softmax weights: the strongest candidate of every edge."""
        return derive_nb201_genotype(weights, self.candidates)

    def forward(self, x: torch.Tensor, arch: Mapping[str, ArchRow]) -> torch.Tensor:
        return self.forward_cells(x, arch)
