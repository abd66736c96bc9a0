"""Perturbation-based selection (Wang et al., ICLR 2021, DARTS-PT): decide by what removing hurts.

An operation unit masks each candidate of its edge in turn (its weight set to zero, the other
weights unchanged) and keeps the one whose removal lowers the supernet's validation accuracy
most. A topology unit (a DARTS node's edges, an input choice's inputs) removes, one at a time,
the member whose removal lowers the accuracy least, until ``keep`` are left. Ties in accuracy go
to the larger (op) or smaller (topology) validation loss, then to the lower index.

The supernet is evaluated as the reference code does: in training mode (BatchNorm uses the batch
statistics), without gradients; the BatchNorm running statistics are restored afterwards, so an
evaluation changes nothing.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator, Mapping

import torch
from torch import nn

from oneshot.search.selection.plan import SelectionState, Unit, project
from supernets.mixed import ArchRow, SparseRow
from supernets.supernet import Supernet

Batch = tuple[torch.Tensor, torch.Tensor]
Rows = Mapping[str, ArchRow]


@contextlib.contextmanager
def batch_statistics(module: nn.Module) -> Iterator[None]:
    """Inside, ``module`` runs in training mode without gradients; its buffers (BatchNorm
    running statistics) and its training flags are as before afterwards."""
    modes = {m: m.training for m in module.modules()}
    saved = [(b, b.detach().clone()) for b in module.buffers()]
    module.train()
    try:
        with torch.no_grad():
            yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
        for m, mode in modes.items():
            m.training = mode


def evaluate(supernet: Supernet, arch: Rows, batches: Iterable[Batch]) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``supernet`` with ``arch`` over ``batches``."""
    correct, loss, count = 0, 0.0, 0
    with batch_statistics(supernet):
        for x, y in batches:
            logits = supernet(x, arch)
            correct += int((logits.argmax(dim=1) == y).sum())
            loss += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            count += len(y)
    if count == 0:
        raise ValueError("perturbation selection got no validation batches")
    return correct / count, loss / count


def _without(supernet: Supernet, base: Rows, unit: Unit, member: object) -> dict[str, ArchRow]:
    """``base`` with one member of ``unit`` removed: a candidate's or an input's weight set to
    zero, or a DARTS edge switched off."""
    rows = dict(base)
    if unit.kind == "edges":
        label = str(member)
        rows[label] = SparseRow(torch.zeros(len(supernet.choice(label).candidates)), ())
        return rows
    row = base[unit.label]
    if isinstance(row, SparseRow):
        weights = row.weights.clone()
        weights[member] = 0.0
        rows[unit.label] = SparseRow(weights, tuple(i for i in row.active if i != member),
                                     row.frozen)
    else:
        weights = torch.as_tensor(row).clone()
        weights[member] = 0.0
        rows[unit.label] = weights
    return rows


def _member_name(supernet: Supernet, unit: Unit, member: object) -> str:
    if unit.kind == "op":
        return supernet.choice(unit.label).candidates[member]
    return str(member)


def decide(supernet: Supernet, unit: Unit, state: SelectionState, rows: Rows,
           batches: Callable[[], Iterable[Batch]], *, round_index: int) -> dict[str, object]:
    """Make the decision of ``unit`` on the architecture ``rows`` (the current softmax rows),
    record it in ``state`` and return its record."""
    base = project(supernet, rows, state)
    base_acc, base_loss = evaluate(supernet, base, batches())
    record: dict[str, object] = {"unit": unit.name, "kind": unit.kind, "round": round_index,
                                 "base_acc": base_acc, "base_loss": base_loss}
    decide_unit = _decide_op if unit.kind == "op" else _decide_topology
    record.update(decide_unit(supernet, unit, state, rows, batches, base_acc))
    state.records.append(record)
    return record


def _scores(supernet: Supernet, unit: Unit, rows: Rows, members: Iterable[object],
            batches: Callable[[], Iterable[Batch]],
            base_acc: float) -> dict[object, dict[str, float]]:
    """Accuracy, loss and accuracy drop with each of ``members`` removed from ``rows``."""
    scores = {}
    for member in members:
        acc, loss = evaluate(supernet, _without(supernet, rows, unit, member), batches())
        scores[member] = {"acc": acc, "loss": loss, "drop": base_acc - acc}
    return scores


def _decide_op(supernet: Supernet, unit: Unit, state: SelectionState, rows: Rows,
               batches: Callable[[], Iterable[Batch]], base_acc: float) -> dict[str, object]:
    """Fix the candidate whose removal lowers the accuracy most."""
    scores = _scores(supernet, unit, project(supernet, rows, state), unit.members, batches,
                     base_acc)
    chosen = min(unit.members, key=lambda m: (scores[m]["acc"], -scores[m]["loss"]))
    state.ops[unit.label] = int(chosen)
    return {"removed": {_member_name(supernet, unit, m): s for m, s in scores.items()},
            "chosen": _member_name(supernet, unit, chosen), "drop": scores[chosen]["drop"]}


def _decide_topology(supernet: Supernet, unit: Unit, state: SelectionState, rows: Rows,
                     batches: Callable[[], Iterable[Batch]], base_acc: float) -> dict[str, object]:
    """Remove the member whose removal lowers the accuracy least until ``unit.keep`` are left."""
    kept = list(unit.members)
    steps = []
    while len(kept) > unit.keep:
        gone = [m for m in unit.members if m not in kept]
        current = _remove_all(supernet, project(supernet, rows, state), unit, gone)
        scores = _scores(supernet, unit, current, kept, batches, base_acc)
        weakest = max(kept, key=lambda m: (scores[m]["acc"], -scores[m]["loss"]))
        kept.remove(weakest)
        names = {m: _member_name(supernet, unit, m) for m in scores}
        steps.append({"removed": {names[m]: s for m, s in scores.items()},
                      "dropped": names[weakest]})
    if unit.kind == "edges":
        state.dropped += [m for m in unit.members if m not in kept]
    else:
        state.inputs[unit.label] = sorted(int(m) for m in kept)
    return {"steps": steps, "kept": [_member_name(supernet, unit, m) for m in kept]}


def _remove_all(supernet: Supernet, rows: Rows, unit: Unit,
                members: list[object]) -> dict[str, ArchRow]:
    out = dict(rows)
    for member in members:
        out = _without(supernet, out, unit, member)
    return out
