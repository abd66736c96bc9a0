"""What perturbation selection decides, in which order, and the architecture its decisions give.

A *unit* is one decision. An ``op`` unit fixes the operation of one operation choice; an
``inputs`` unit keeps ``keep`` inputs of an input choice; an ``edges`` unit keeps ``keep`` of a
DARTS node's incoming edges (the paper's topology selection). Operations are decided first,
then inputs and edges, as in DARTS-PT. Units are grouped by their label's prefix before the
first ``/`` (``normal``, ``reduce``, ``cell``); each round decides one unit of every group, in an
order drawn per group from the selection seed (the reference code draws the next edge at random
and decides one normal and one reduction edge per round).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from supernets.choices import InputChoice
from supernets.darts.search import DartsSupernet
from supernets.darts.topology import edge_label
from supernets.mixed import ArchRow, SparseRow
from supernets.supernet import Supernet

DARTS_NODE_INPUTS = 2  # a DARTS node sums two inputs (Liu et al., 2019)


@dataclass(frozen=True)
class Unit:
    """One decision: its ``kind`` (``op``, ``inputs`` or ``edges``), its group and what it
    chooses among: candidate indices of ``label`` (op), input indices of ``label`` (inputs) or
    edge labels (edges), of which ``keep`` stay."""

    name: str
    kind: str
    group: str
    members: tuple[Any, ...]
    keep: int
    label: str | None = None


@dataclass
class SelectionState:
    """The decisions so far, JSON-ready: saved after every round so a selection can resume."""

    rounds: list[list[str]]
    ops: dict[str, int] = field(default_factory=dict)
    inputs: dict[str, list[int]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    done: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "ops": self.ops, "inputs": self.inputs,
                "dropped": self.dropped, "records": self.records, "done": self.done}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SelectionState:
        return cls(rounds=[list(r) for r in data["rounds"]], ops=dict(data["ops"]),
                   inputs={k: list(v) for k, v in data["inputs"].items()},
                   dropped=list(data["dropped"]), records=list(data["records"]),
                   done=int(data["done"]))


def _group(label: str) -> str:
    return label.split("/", 1)[0]


def selectable(supernet: Supernet, label: str) -> tuple[int, ...]:
    """The candidates of operation choice ``label`` selection may fix: all of them, except
    ``none`` on the DARTS space, whose genotype (and derive rule) has no ``none`` edges."""
    names = supernet.choice(label).candidates
    skip = {"none"} if isinstance(supernet, DartsSupernet) else set()
    return tuple(i for i, name in enumerate(names) if name not in skip)


def plan_units(supernet: Supernet) -> list[Unit]:
    """Every decision of ``supernet``: its operation choices, then its input choices (or, on the
    DARTS space, the nodes with more than two incoming edges)."""
    units: list[Unit] = []
    topology: list[Unit] = []
    for label, modules in supernet.choices().items():
        choice = modules[0]
        if isinstance(choice, InputChoice):
            if choice.num_chosen < len(choice.candidates):
                topology.append(Unit(label, "inputs", _group(label),
                                     tuple(range(len(choice.candidates))), choice.num_chosen,
                                     label))
        else:
            units.append(Unit(label, "op", _group(label), selectable(supernet, label), 1, label))
    if isinstance(supernet, DartsSupernet):
        topology += _darts_nodes(supernet)
    return units + topology


def _darts_nodes(supernet: DartsSupernet) -> list[Unit]:
    """Per cell type, every node with more than two incoming edges (``normal/node_1`` ...)."""
    inputs = supernet.cells[0].inputs
    units = []
    for cell_type in ("normal", "reduce"):
        for node in range(supernet.steps):
            edges = tuple(edge_label(cell_type, k) for k, (n, _) in enumerate(inputs) if n == node)
            if len(edges) > DARTS_NODE_INPUTS:
                units.append(Unit(f"{cell_type}/node_{node}", "edges", cell_type, edges,
                                  DARTS_NODE_INPUTS))
    return units


def plan_rounds(units: list[Unit], seed: int) -> list[list[str]]:
    """Unit names per round: operation rounds, then topology rounds; each round takes the next
    unit of every group in that group's seeded random order."""
    rng = random.Random(seed)
    rounds: list[list[str]] = []
    for kinds in (("op",), ("inputs", "edges")):
        groups: dict[str, list[str]] = {}
        for unit in units:
            if unit.kind in kinds:
                groups.setdefault(unit.group, []).append(unit.name)
        orders = []
        for names in groups.values():
            order = list(names)
            rng.shuffle(order)
            orders.append(order)
        for r in range(max((len(order) for order in orders), default=0)):
            rounds.append([order[r] for order in orders if r < len(order)])
    return rounds


def _zero_row(supernet: Supernet, label: str, like: torch.Tensor) -> SparseRow:
    """A row that adds nothing: the ``none`` candidate alone when there is one (zeros at no
    cost), else the first candidate at weight zero; ``like`` keeps it in the alphas' graph."""
    names = supernet.choice(label).candidates
    index = names.index("none") if "none" in names else 0
    return SparseRow(like * 0, (index,))


def _weights(row: ArchRow) -> torch.Tensor:
    return row.weights if isinstance(row, SparseRow) else row


def project(supernet: Supernet, rows: Mapping[str, ArchRow], state: SelectionState, *,
            connected: bool = False) -> dict[str, ArchRow]:
    """``rows`` with the decisions of ``state`` applied: a fixed edge runs only its operation,
    a dropped DARTS edge nothing, a decided input choice only its kept inputs.

    With ``connected`` (fine-tuning) every replaced row still depends on the row it replaces,
    with a zero gradient, so an architecture step that differentiates every alpha keeps
    working; a dense row then stays dense (the other candidates computed at weight 0, so a
    second-order step sees every weight), a sampled row stays sparse.
    """
    out = dict(rows)
    for label, index in state.ops.items():
        out[label] = _fixed(rows[label], [index], connected)
    for label, kept in state.inputs.items():
        out[label] = _fixed(rows[label], kept, connected)
    for label in state.dropped:
        row = rows[label]
        if not connected:
            out[label] = SparseRow(torch.zeros_like(_weights(row)), ())
        elif isinstance(row, SparseRow):
            out[label] = _zero_row(supernet, label, row.weights)
        else:
            out[label] = row * 0
    return out


def _fixed(row: ArchRow, indices: list[int], connected: bool) -> ArchRow:
    """Weight 1 at ``indices``, 0 elsewhere (see :func:`project` for ``connected``)."""
    like = _weights(row)
    mask = torch.zeros_like(like)
    mask[indices] = 1.0
    if not connected:
        return SparseRow(mask, tuple(indices))
    if isinstance(row, SparseRow):
        return SparseRow(mask + like * 0, tuple(indices))
    return mask + like * 0


def final_rows(supernet: Supernet, state: SelectionState,
               rows: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weight rows that the space's derive rule turns into the selected genotype: one-hot at a
    fixed operation, ones at kept inputs, zeros on a dropped edge (undecided rows as given)."""
    out = {label: torch.as_tensor(row).detach().clone() for label, row in rows.items()}
    for label, index in state.ops.items():
        out[label] = torch.zeros_like(out[label])
        out[label][index] = 1.0
    for label, kept in state.inputs.items():
        out[label] = torch.zeros_like(out[label])
        out[label][kept] = 1.0
    for label in state.dropped:
        out[label] = torch.zeros_like(out[label])
    return out
