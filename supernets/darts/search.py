"""The DARTS search space: cells whose edges are operation choices shared by cell type."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from supernets.darts.genotype import DartsGenotype, derive_darts_genotype
from supernets.darts.sampling import (darts_cell_decisions, sampled_darts_arch,
                                      sampled_darts_genotype)
from supernets.darts.topology import CELL_TYPES, edge_inputs, edge_label
from supernets.batchnorm import BatchNorm2d
from supernets.choices import OpChoice
from supernets.decisions import CellChoices
from supernets.errors import SpaceError
from supernets.mixed import SparseRow, is_unused
from supernets.partial import check_partial_channels, partial_edge
from supernets.recompute import RecomputeMode, check_recompute, recomputed
from supernets.ops import DARTS_PRIMITIVES, FactorizedReduce, ReLUConvBN, create_op
from supernets.supernet import Supernet


def _search_op(name: str, c: int, stride: int) -> nn.Module:
    """A candidate as DARTS searches it: no affine BatchNorm, pools followed by a BatchNorm."""
    op = create_op(name, c, stride, affine=False)
    if "pool" in name:
        op = nn.Sequential(op, BatchNorm2d(c, affine=False))
    return op


class SearchCell(RecomputeMode, nn.Module):
    """A DARTS cell whose every edge is an :class:`OpChoice` over the candidate operations.

    With ``partial_channels`` K > 1 each edge mixes ``1 / K`` of the channels
    (:func:`~supernets.partial.partial_edge`). ``recompute`` (``weighted``, ``edge`` or
    ``cell``) recomputes in backward, instead of storing them, the activations of every edge's
    candidates with weights, of every edge, or of the whole cell
    (:mod:`supernets.recompute`).
    """

    def __init__(self, *, steps: int, multiplier: int, c_prev_prev: int, c_prev: int, c: int,
                 reduction: bool, reduction_prev: bool, candidates: Sequence[str],
                 partial_channels: int = 1, recompute: str = "none") -> None:
        super().__init__()
        self.cell_type = CELL_TYPES[1] if reduction else CELL_TYPES[0]
        self.steps = steps
        self.multiplier = multiplier
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, c, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=False)
        self.inputs = edge_inputs(steps)
        self.edges = nn.ModuleList(
            self._edge(edge_label(self.cell_type, k), candidates, c,
                       2 if reduction and j < 2 else 1, partial_channels)
            for k, (_, j) in enumerate(self.inputs))
        self.recompute = recompute

    @staticmethod
    def _edge(label: str, candidates: Sequence[str], c: int, stride: int,
              partial_channels: int) -> nn.Module:
        def choice(channels: int) -> OpChoice:
            return OpChoice(label, candidates, build=lambda name: _search_op(name, channels, stride))
        return partial_edge(choice, c, partial_channels, stride)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        """Edges whose row is unused (:func:`~supernets.mixed.is_unused`) are skipped."""
        if self.recompute == "cell":
            return recomputed(self, self._cell, s0, s1)
        return self._cell(s0, s1)

    def _cell(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        node_sums: list[torch.Tensor | None] = [None] * self.steps
        for edge, (node, j) in zip(self.edges, self.inputs):
            if j == len(states):
                states.append(self._node_state(node_sums, node - 1))
            row = edge.row()
            if is_unused(row):
                continue
            if self.recompute == "edge":
                contribution = recomputed(edge, edge, states[j], row)
            else:
                contribution = edge(states[j], row)
            node_sums[node] = contribution if node_sums[node] is None else node_sums[node] + contribution
        states.append(self._node_state(node_sums, self.steps - 1))
        return torch.cat(states[-self.multiplier:], dim=1)

    def _node_state(self, node_sums: list[torch.Tensor | None], node: int) -> torch.Tensor:
        state = node_sums[node]
        if state is None:
            raise SpaceError(f"{self.cell_type} cell node {node} has no used incoming edge; "
                             "give every node at least one active edge")
        return state


class DartsSupernet(Supernet):
    """The DARTS search network (Liu et al., 2019) with the paper's reference configuration.

    It keeps DARTS' derive rule (two strongest non-``none`` inputs per node, optionally at most
    ``max_skip_connect`` skip connections), ENAS's cell sampling and its evaluation network.
    ``partial_channels`` K > 1 mixes ``1 / K`` of every edge's channels (PC-DARTS; the
    ``pcdarts`` algorithm sets it); the fixed network of a genotype ignores it. ``recompute``
    (``weighted``, ``edge`` or ``cell``) recomputes activations in backward instead of storing
    them, same maths; the evaluation network of a genotype (:class:`DartsNetwork`) does not take it.
    """

    genotype_class = DartsGenotype

    def __init__(self, *, num_classes: int = 10, channels: int = 16, layers: int = 8,
                 steps: int = 4, multiplier: int = 4, stem_multiplier: int = 3,
                 in_channels: int = 3, candidates: Sequence[str] = DARTS_PRIMITIVES,
                 max_skip_connect: int | None = None, partial_channels: int = 1,
                 recompute: str = "none") -> None:
        super().__init__()
        check_partial_channels(partial_channels)
        check_recompute(recompute)
        if layers < 3:
            raise SpaceError(f"the DARTS network needs at least 3 cells (two are reductions), got {layers}")
        unknown = [name for name in candidates if name not in DARTS_PRIMITIVES]
        if unknown:
            raise SpaceError(f"unknown DARTS candidate(s) {unknown}; choose from: {', '.join(DARTS_PRIMITIVES)}")
        self.candidates = tuple(candidates)
        self.steps = steps
        self.max_skip_connect = max_skip_connect
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            self.cells.append(SearchCell(
                steps=steps, multiplier=multiplier, c_prev_prev=c_prev_prev, c_prev=c_prev, c=c_curr,
                reduction=reduction, reduction_prev=reduction_prev, candidates=self.candidates,
                partial_channels=partial_channels, recompute=recompute))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, multiplier * c_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def derive(self, weights: Mapping[str, torch.Tensor]) -> DartsGenotype:
        """The DARTS genotype of softmax weights: per node its two strongest non-``none`` edges."""
        return derive_darts_genotype(weights, self.candidates, steps=self.steps,
                                     max_skip_connect=self.max_skip_connect)

    def node_edges(self) -> dict[str, list[str]]:
        """Per cell type and intermediate node (``normal/node_0`` ..), the edges into it."""
        return {f"{cell_type}/node_{node}": [edge_label(cell_type, k)
                                             for k, (target, _) in enumerate(edge_inputs(self.steps))
                                             if target == node]
                for cell_type in CELL_TYPES for node in range(self.steps)}

    def sampling_decisions(self) -> list[CellChoices]:
        """ENAS micro decisions: per cell type and node, two inputs and an op for each."""
        return darts_cell_decisions(self.candidates, self.steps)

    def sampled_arch(self, choices: Mapping[str, int]) -> dict[str, SparseRow]:
        """The ``arch`` of a sample of :meth:`sampling_decisions` (only picked ops run)."""
        return sampled_darts_arch(choices, self.candidates, self.steps)

    def sampled_genotype(self, choices: Mapping[str, int]) -> DartsGenotype:
        """The genotype of a sample of :meth:`sampling_decisions`."""
        return sampled_darts_genotype(choices, self.candidates, self.steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.global_pooling(s1).flatten(1))
