"""The NAS-Bench-201 search space: cells whose six edges are operation choices."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from supernets.choices import ChoiceValue, OpChoice, building_fixed_network
from supernets.errors import SpaceError
from supernets.nb201.genotype import Nb201Genotype, derive_nb201_genotype
from supernets.nb201.ops import NB201_OPS
from supernets.nb201.skeleton import Nb201Skeleton
from supernets.nb201.topology import CELL, NODES, edge_inputs, edge_label
from supernets.partial import check_partial_channels, partial_edge
from supernets.recompute import RecomputeMode, check_recompute, recomputed
from supernets.supernet import Supernet


class SearchCell(RecomputeMode, nn.Module):
    """A NAS-Bench-201 cell: node ``i`` sums one operation choice per earlier node.

    Searched, the BatchNorms are not affine; in the fixed network they are, and every chosen
    operation but ``skip_connect`` is dropped with the drop-path probability. With
    ``partial_channels`` K > 1 each edge mixes ``1 / K`` of the channels
    (:func:`~supernets.partial.partial_edge`). ``recompute`` (``weighted``, ``edge`` or
    ``cell``) recomputes in backward, instead of storing them, the activations of every edge's
    candidates with weights, of every edge, or of the whole cell (:mod:`supernets.recompute`).
    """

    def __init__(self, c: int, candidates: Sequence[str], partial_channels: int = 1,
                 recompute: str = "none") -> None:
        super().__init__()
        self.inputs = edge_inputs()
        self.edges = nn.ModuleList(
            partial_edge(lambda channels, k=k: OpChoice(edge_label(k), candidates,
                                                        channels=channels, drop_path=True),
                         c, partial_channels)
            for k in range(len(self.inputs)))
        self.recompute = recompute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.recompute == "cell":
            return recomputed(self, self._cell, x)
        return self._cell(x)

    def _cell(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for node in range(1, NODES):
            out = None
            for edge, (target, j) in zip(self.edges, self.inputs):
                if target == node:
                    h = recomputed(edge, edge, nodes[j]) if self.recompute == "edge" \
                        else edge(nodes[j])
                    out = h if out is None else out + h
            nodes.append(out)
        return nodes[-1]


class Nb201Supernet(Nb201Skeleton, Supernet):
    """The NAS-Bench-201 search network (Dong & Yang, 2020): ``layers`` cells per stage.

    Choice points are ``cell/edge_0 .. cell/edge_5``, shared by every cell (see
    :mod:`supernets.nb201.topology` for which nodes each edge joins). Its fixed network is the
    benchmark's network of a genotype (affine BatchNorms, 16 channels and 5 cells per stage
    unless given). ``partial_channels`` K > 1 mixes ``1 / K`` of every edge's channels
    (PC-DARTS; the ``pcdarts`` algorithm sets it). ``recompute`` (``weighted``, ``edge`` or
    ``cell``) recomputes activations in backward instead of storing them, same maths.
    """

    genotype_class = Nb201Genotype

    def __init__(self, *, num_classes: int = 10, channels: int = 16, layers: int = 5,
                 in_channels: int = 3, candidates: Sequence[str] = NB201_OPS,
                 partial_channels: int = 1, recompute: str = "none") -> None:
        candidates = tuple(candidates)
        unknown = [name for name in candidates if name not in NB201_OPS]
        if unknown or not candidates or len(set(candidates)) != len(candidates):
            raise SpaceError(f"NAS-Bench-201 candidates must be distinct operations from: "
                             f"{', '.join(NB201_OPS)}; got {list(candidates)}")
        check_partial_channels(partial_channels)
        check_recompute(recompute)
        if building_fixed_network():
            recompute = "none"  # a search-time option: the fixed network stores as usual
        super().__init__(lambda c: SearchCell(c, candidates, partial_channels, recompute),
                         num_classes=num_classes, channels=channels, layers=layers,
                         in_channels=in_channels)
        self.candidates = candidates

    def derive(self, weights: Mapping[str, torch.Tensor]) -> Nb201Genotype:
        """The genotype of softmax weights: the strongest candidate of every edge."""
        return derive_nb201_genotype(weights, self.candidates)

    def node_edges(self) -> dict[str, list[str]]:
        """Per node (``cell/node_1`` .. ``cell/node_3``), the edges into it."""
        return {f"{CELL}/node_{node}": [edge_label(k) for k, (target, _) in enumerate(edge_inputs())
                                        if target == node]
                for node in range(1, NODES)}

    def genotype_from_choices(self, chosen: Mapping[str, ChoiceValue]) -> Nb201Genotype:
        return Nb201Genotype(tuple(str(chosen[edge_label(k)]) for k in range(len(edge_inputs()))))

    @classmethod
    def genotype_choices(cls, genotype: Any) -> dict[str, ChoiceValue]:
        cls.require_genotype(genotype)
        return {edge_label(k): op for k, op in enumerate(genotype.ops)}

    @classmethod
    def fixed_network_options(cls, genotype: Any, options: Mapping[str, Any]) -> dict[str, Any]:
        """The benchmark trains every genotype at its own size, whatever the search used."""
        return {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_cells(x)
