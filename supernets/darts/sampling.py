"""The DARTS cell as ENAS's micro search samples it: two (input, operation) pairs per node.

A sampled node sums ``op_0(state[input_0]) + op_1(state[input_1])``. In the supernet each pair
is one active candidate of the edge ``(node, input)`` with weight 1; when a node picks the same
input twice that edge gets weight 1 on both operations (2 on one operation picked twice), so the
node computes the same sum as the derived cell. Edges no pair picked are switched off (a
:class:`SparseRow` with no active candidate) and cost nothing.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from supernets.darts.genotype import DartsGenotype
from supernets.darts.topology import CELL_TYPES, edge_inputs, edge_label
from supernets.decisions import CellChoices, chosen_index
from supernets.mixed import SparseRow


def darts_cell_decisions(candidates: Sequence[str], steps: int) -> list[CellChoices]:
    """The normal then the reduction cell; operations are the candidates except ``none``."""
    ops = tuple(name for name in candidates if name != "none")
    return [CellChoices(cell_type, ops=ops, steps=steps) for cell_type in CELL_TYPES]


def _pairs(cell: CellChoices, choices: Mapping[str, int]) -> list[list[tuple[int, str]]]:
    """Per node, the sampled ``(input, op)`` pairs."""
    index = {decision.label: chosen_index(choices, decision) for decision in cell.decisions()}
    return [[(index[cell.input_label(node, k)], cell.ops[index[cell.op_label(node, k)]])
             for k in range(cell.inputs_per_node)]
            for node in range(cell.steps)]


def sampled_darts_arch(choices: Mapping[str, int], candidates: Sequence[str],
                       steps: int) -> dict[str, SparseRow]:
    """The supernet ``arch`` of a sample: one row per edge, only the picked operations active."""
    edge_index = {pair: k for k, pair in enumerate(edge_inputs(steps))}
    arch: dict[str, SparseRow] = {}
    for cell in darts_cell_decisions(candidates, steps):
        rows = [torch.zeros(len(candidates)) for _ in edge_index]
        for node, pairs in enumerate(_pairs(cell, choices)):
            for j, op in pairs:
                rows[edge_index[(node, j)]][candidates.index(op)] += 1.0
        for k, row in enumerate(rows):
            active = tuple(int(i) for i in torch.nonzero(row).flatten())
            arch[edge_label(cell.name, k)] = SparseRow(row, active)
    return arch


def sampled_darts_genotype(choices: Mapping[str, int], candidates: Sequence[str],
                           steps: int) -> DartsGenotype:
    """The genotype of a sample: each node's two ``(op, input)`` pairs in sampling order."""
    cells = {cell.name: tuple((op, j) for pairs in _pairs(cell, choices) for j, op in pairs)
             for cell in darts_cell_decisions(candidates, steps)}
    concat = tuple(range(2, steps + 2))
    return DartsGenotype(normal=cells["normal"], normal_concat=concat,
                         reduce=cells["reduce"], reduce_concat=concat)
