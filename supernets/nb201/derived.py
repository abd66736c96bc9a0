"""The NAS-Bench-201 network of one genotype, as the benchmark trains it (affine BatchNorms)."""

from __future__ import annotations

import torch
from torch import nn

from supernets.drop_path import DropPathNetwork, drop_path
from supernets.errors import SpaceError
from supernets.nb201.genotype import Nb201Genotype
from supernets.nb201.ops import create_nb201_op
from supernets.nb201.skeleton import Nb201Skeleton
from supernets.nb201.topology import NODES, edge_inputs


class DerivedCell(nn.Module):
    """One discrete cell: each node sums its edges' operations; ``none`` edges are left out."""

    def __init__(self, genotype: Nb201Genotype, c: int) -> None:
        super().__init__()
        kept = [(op, node, j) for op, (node, j) in zip(genotype.ops, edge_inputs()) if op != "none"]
        self.ops = nn.ModuleList(create_nb201_op(op, c, affine=True) for op, _, _ in kept)
        self.wiring = [(node, j) for _, node, j in kept]
        self.droppable = [not isinstance(op, nn.Identity) for op in self.ops]

    def forward(self, x: torch.Tensor, drop_prob: float | torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in range(1, NODES):
            out = None
            for op, (target, j), droppable in zip(self.ops, self.wiring, self.droppable):
                if target == node:
                    h = op(nodes[j])
                    if droppable:
                        h = drop_path(h, drop_prob, self.training)
                    out = h if out is None else out + h
            nodes.append(x.mul(0.0) if out is None else out)
        return nodes[-1]


class Nb201Network(Nb201Skeleton, DropPathNetwork):
    """The NAS-Bench-201 network of ``genotype``: ``layers`` cells per stage (the benchmark: 5),
    ``channels`` in the first stage (the benchmark: 16).

    ``forward(x)`` returns ``(logits, None)`` (there is no auxiliary head). Drop-path applies to
    every operation that is not an identity, with probability :attr:`drop_path_prob` (0 by
    default; the benchmark trains without it).
    """

    drop_prob: torch.Tensor

    def __init__(self, genotype: Nb201Genotype, *, num_classes: int = 10, channels: int = 16,
                 layers: int = 5, in_channels: int = 3) -> None:
        if not isinstance(genotype, Nb201Genotype):
            raise SpaceError("the NAS-Bench-201 network needs an Nb201Genotype, "
                             f"got {type(genotype).__name__}")
        super().__init__(lambda c: DerivedCell(genotype, c), num_classes=num_classes,
                         channels=channels, layers=layers, in_channels=in_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.forward_cells(x, self.drop_prob), None
