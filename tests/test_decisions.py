"""Spaces as decision sequences: ENAS micro cells of DARTS (the default per label: test_choices)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from supernets.darts.derived import DartsNetwork
from supernets.darts.genotype import DartsGenotype
from supernets.darts.search import DartsSupernet
from supernets.decisions import CellChoices, flat_decisions
from supernets.errors import SpaceError
from supernets.mixed import MixedOp, SparseRow
from supernets.ops import DARTS_PRIMITIVES, create_op

OPS = DARTS_PRIMITIVES[1:]  # every DARTS candidate but 'none'


def _net() -> DartsSupernet:
    torch.manual_seed(0)
    return DartsSupernet(channels=4, layers=3)


def _cell_choices(pairs: list[list[tuple[int, str]]], cell: str = "normal") -> dict[str, int]:
    """Choices of one cell from per-node ``(input, op)`` pairs."""
    choices = {}
    for node, node_pairs in enumerate(pairs):
        for k, (j, op) in enumerate(node_pairs):
            choices[f"{cell}/node_{node}/input_{k}"] = j
            choices[f"{cell}/node_{node}/op_{k}"] = OPS.index(op)
    return choices


# Node 0 reads input 1 twice with two ops, node 2 picks the same (input, op) twice.
NORMAL = [[(1, "sep_conv_3x3"), (1, "max_pool_3x3")], [(0, "skip_connect"), (2, "dil_conv_3x3")],
          [(3, "avg_pool_3x3"), (3, "avg_pool_3x3")], [(4, "sep_conv_5x5"), (0, "skip_connect")]]
REDUCE = [[(0, "max_pool_3x3"), (1, "sep_conv_3x3")], [(2, "skip_connect"), (0, "dil_conv_5x5")],
          [(1, "avg_pool_3x3"), (3, "sep_conv_3x3")], [(2, "skip_connect"), (4, "max_pool_3x3")]]
CHOICES = {**_cell_choices(NORMAL, "normal"), **_cell_choices(REDUCE, "reduce")}


def test_darts_decisions_are_enas_micro_cells_without_none() -> None:
    decisions = _net().sampling_decisions()
    assert decisions == [CellChoices("normal", ops=OPS, steps=4),
                         CellChoices("reduce", ops=OPS, steps=4)]
    flat = flat_decisions(decisions)
    assert len(flat) == 2 * 4 * 4
    assert [d.label for d in flat[:8]] == [
        "normal/node_0/input_0", "normal/node_0/input_1", "normal/node_0/op_0",
        "normal/node_0/op_1", "normal/node_1/input_0", "normal/node_1/input_1",
        "normal/node_1/op_0", "normal/node_1/op_1"]
    inputs = {d.label: d.candidates for d in flat if "/input_" in d.label}
    assert inputs["reduce/node_3/input_1"] == ("0", "1", "2", "3", "4")
    assert all(d.candidates == OPS for d in flat if "/op_" in d.label)


def test_sampled_arch_rows() -> None:
    arch = _net().sampled_arch(CHOICES)
    assert len(arch) == 28 and all(isinstance(row, SparseRow) for row in arch.values())
    index = DARTS_PRIMITIVES.index
    row = arch["normal/edge_1"]  # node 0, input 1: two ops on the same input
    assert row.active == (index("max_pool_3x3"), index("sep_conv_3x3"))
    assert row.weights[list(row.active)].tolist() == [1.0, 1.0]
    row = arch["normal/edge_8"]  # node 2, input 3 (node 1): the same op twice
    assert row.active == (index("avg_pool_3x3"),) and row.weights.sum() == 2.0
    used = {label for label, row in arch.items() if row.active}
    assert {label for label in used if label.startswith("normal/")} == {
        "normal/edge_1", "normal/edge_2", "normal/edge_4", "normal/edge_8", "normal/edge_13",
        "normal/edge_9"}
    assert all(row.weights.sum() == 0 for label, row in arch.items() if label not in used)


def test_sampled_cell_computes_the_sum_of_its_picked_ops() -> None:
    net = _net().eval()
    cell = net.cells[0]
    s0, s1 = torch.randn(2, 12, 8, 8), torch.randn(2, 12, 8, 8)
    with net.bound(net.sampled_arch(CHOICES)):
        out = cell(s0, s1)
    with torch.no_grad():
        states = [cell.preprocess0(s0), cell.preprocess1(s1)]
        offsets = [0, 2, 5, 9]
        for node, pairs in enumerate(NORMAL):
            edges = [cell.edges[offsets[node] + j] for j, _ in pairs]
            states.append(sum(edge.ops[DARTS_PRIMITIVES.index(op)](states[j])
                              for edge, (j, op) in zip(edges, pairs)))
    torch.testing.assert_close(out, torch.cat(states[2:], dim=1))


def test_only_the_sampled_ops_run() -> None:
    net = _net()
    calls: Counter[tuple[int, int, str]] = Counter()
    for c, cell in enumerate(net.cells):
        for k, edge in enumerate(cell.edges):
            for name, op in zip(edge.candidates, edge.ops):
                op.register_forward_hook(lambda *_, key=(c, k, name): calls.update([key]))
    net(torch.randn(2, 3, 8, 8), net.sampled_arch(CHOICES))
    offsets = [0, 2, 5, 9]
    expected = Counter()
    for c, cell in enumerate(net.cells):
        pairs = REDUCE if cell.cell_type == "reduce" else NORMAL
        expected.update({(c, offsets[node] + j, op) for node, node_pairs in enumerate(pairs)
                         for j, op in node_pairs})
    assert calls == expected


def test_node_without_used_edge_is_an_error() -> None:
    net = _net()
    arch = net.sampled_arch(CHOICES)
    for k in (0, 1):
        arch[f"normal/edge_{k}"] = SparseRow(torch.zeros(len(DARTS_PRIMITIVES)), ())
    with pytest.raises(SpaceError, match="normal cell node 0 has no used incoming edge"):
        net(torch.randn(1, 3, 8, 8), arch)


def test_sampled_genotype_is_a_darts_genotype_retrain_accepts() -> None:
    genotype = _net().sampled_genotype(CHOICES)
    assert genotype.normal == tuple((op, j) for pairs in NORMAL for j, op in pairs)
    assert genotype.reduce == tuple((op, j) for pairs in REDUCE for j, op in pairs)
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
    assert DartsGenotype.from_dict(genotype.to_dict()) == genotype
    network = DartsNetwork(genotype, channels=4, layers=3, auxiliary=False)
    assert network(torch.randn(2, 3, 8, 8))[0].shape == (2, 10)


@pytest.mark.parametrize("choices, message", [
    ({}, "has no decision 'normal/node_0/input_0'"),
    ({**CHOICES, "normal/node_1/input_0": 3}, "'normal/node_1/input_0' must be an index in 0..2"),
    ({**CHOICES, "reduce/node_0/op_1": 7}, "'reduce/node_0/op_1' must be an index in 0..6"),
])
def test_bad_choices_are_one_line_errors(choices: dict[str, int], message: str) -> None:
    with pytest.raises(SpaceError, match=message) as info:
        _net().sampled_arch(choices)
    assert "\n" not in str(info.value)


def test_mixed_op_without_none_needs_an_active_candidate() -> None:
    op = MixedOp(["skip_connect"], lambda name: create_op(name, 4, 1, affine=False))
    with pytest.raises(SpaceError, match="no active candidate and no 'none' candidate"):
        op(torch.randn(1, 4, 4, 4), SparseRow(torch.zeros(1), ()))
