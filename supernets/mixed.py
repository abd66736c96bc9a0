"""The mixed operation: one choice point whose output is a weighted sum of its candidates."""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Sequence, Union

import torch
from torch import nn

from supernets.errors import SpaceError
from supernets.batchnorm import FoldSlot
from supernets.folded_norm import Term, attach_fold_slot, folded_weighted_sum
from supernets.recompute import recomputed


class SparseRow(NamedTuple):
    """Weights over a choice point's candidates with the indices that are non-zero.

    Sampling algorithms pass this instead of a dense row so that only the ``active`` candidates
    are computed; every other candidate's weight is exactly zero and takes no gradient.
    Active candidates also listed in ``frozen`` run without autograd: their output is a
    constant, so only their weight gets a gradient (ProxylessNAS's inactive path) and none of
    their activations are kept for the backward pass. With ``constants`` the weights of the
    inactive candidates (zero in value) are added to the output as constants, so that each still
    takes a gradient, the sum of the output's gradient (GDAS's reference estimator).
    """

    weights: torch.Tensor
    active: tuple[int, ...]
    frozen: tuple[int, ...] = ()
    constants: bool = False


ArchRow = Union[torch.Tensor, SparseRow]


def weight_row(weights: Mapping[str, torch.Tensor], label: str, size: int) -> torch.Tensor:
    """The architecture-weight row of ``label`` (detached), checked for shape and finiteness."""
    if label not in weights:
        raise SpaceError(f"architecture weights have no row '{label}'; "
                         "pass one row per label of supernet.choice_points()")
    row = torch.as_tensor(weights[label]).detach()
    if row.dim() != 1 or row.numel() != size:
        raise SpaceError(f"architecture weights '{label}' must be a 1-D row of {size} values "
                         f"(one per candidate), got shape {tuple(row.shape)}")
    if not torch.isfinite(row).all():
        raise SpaceError(f"architecture weights '{label}' contain NaN or inf; the search "
                         "diverged, lower the learning rates and search again")
    return row


def is_unused(row: ArchRow) -> bool:
    """Whether ``row`` switches its edge off: a :class:`SparseRow` with no active candidate."""
    return isinstance(row, SparseRow) and not row.active


class MixedOp(nn.Module):
    """Candidates of one edge; ``forward(x, row)`` returns ``sum_i row[i] * op_i(x)``.

    Candidates that start with a ReLU (DARTS' sep/dil convolutions, NAS-Bench-201's
    convolutions) share one ``relu(x)``, computed, stored and differentiated once: their leading
    ReLU is a :class:`SharedReLU` (:func:`set_relu_sharing` switches this off).

    A ``none`` candidate contributes exactly zero for any weight, so it is never computed. A
    row with nothing to compute gives the zeros of the ``none`` candidate; callers that can drop
    the edge instead check :func:`is_unused` first and skip the call.

    With ``recompute_weighted`` (``space.recompute=weighted``, set by the cell) the candidates
    with weights run under :func:`~supernets.recompute.recomputed`: their activations are
    rebuilt in backward, the parameter-free candidates' are stored.

    Candidates that end in a BatchNorm without affine parameters (all of DARTS' but
    ``skip_connect``) have it folded into the weighted sum when it normalises by the batch
    (:mod:`supernets.folded_norm`; :func:`use_folded_norms` switches this off).
    """

    def __init__(self, candidates: Sequence[str], build: Callable[[str], nn.Module]) -> None:
        super().__init__()
        self.candidates = tuple(candidates)
        self.ops = nn.ModuleList(build(name) for name in self.candidates)
        self._nonzero = tuple(i for i, name in enumerate(self.candidates) if name != "none")
        self._none_index = self.candidates.index("none") if "none" in self.candidates else None
        self.relu_sharing = True
        self.fold_norms = True
        self.recompute_weighted = False
        self._weighted = frozenset(i for i, op in enumerate(self.ops)
                                   if next(op.parameters(), None) is not None)
        self._relu_shared = _SharedValue()
        self._relu_first = frozenset(i for i, op in enumerate(self.ops)
                                     if _share_leading_relu(op, self._relu_shared))
        self._fold_slot = FoldSlot()
        self._folding = frozenset(i for i, op in enumerate(self.ops)
                                  if attach_fold_slot(op, self._fold_slot))

    def forward(self, x: torch.Tensor, row: ArchRow) -> torch.Tensor:
        out = self._mix(x, row)
        if isinstance(row, SparseRow) and row.constants:  # integer indexing: no index tensor
            out = out + (row.weights.sum() - sum(row.weights[i] for i in row.active))
        return out

    def _mix(self, x: torch.Tensor, row: ArchRow) -> torch.Tensor:
        frozen: tuple[int, ...] = ()
        if isinstance(row, SparseRow):
            weights, frozen = row.weights, row.frozen
            active = tuple(i for i in row.active if i != self._none_index)
        else:
            weights, active = row, self._nonzero
        if not active:
            if self._none_index is None:
                raise SpaceError("this edge has no active candidate and no 'none' candidate to "
                                 "give zeros; activate one candidate or skip the edge")
            return self.ops[self._none_index](x) * weights[self._none_index]
        rebuilt = (tuple(i for i in active if i in self._weighted and i not in frozen)
                   if self.recompute_weighted else ())
        if not rebuilt:
            return self._weighted_sum(x, weights, active, frozen)
        out = recomputed(self, self._weighted_sum, x, weights, rebuilt, frozen)
        kept = tuple(i for i in active if i not in rebuilt)
        if kept:
            out = out + self._weighted_sum(x, weights, kept, frozen)
        return out

    def _weighted_sum(self, x: torch.Tensor, weights: torch.Tensor, active: tuple[int, ...],
                      frozen: tuple[int, ...]) -> torch.Tensor:
        """``sum_i weights[i] * op_i(x)`` over ``active`` (not empty); ``frozen`` run without
        autograd."""
        shared = self._relu_shared
        if self.relu_sharing and sum(i in self._relu_first for i in active) > 1:
            shared.input, shared.output = x, torch.relu(x)
        try:
            terms = [self._term(i, x, i in frozen) for i in active]
        finally:
            shared.input = shared.output = None
        if any(term.norm is not None for term in terms):
            return folded_weighted_sum(weights, terms)
        out = terms[0].output * weights[terms[0].index]
        for term in terms[1:]:
            out = torch.addcmul(out, term.output, weights[term.index])
        return out

    def _term(self, i: int, x: torch.Tensor, frozen: bool) -> Term:
        """Candidate ``i``'s output: before its trailing BatchNorm when that deferred to the
        sum (named in the term), else as written."""
        if frozen or not self.fold_norms or i not in self._folding:
            return Term(i, self._run(i, x, frozen), None)
        slot = self._fold_slot
        slot.open, slot.norm = True, None
        try:
            output = self.ops[i](x)
        finally:
            slot.open = False
        norm, slot.norm = slot.norm, None
        return Term(i, output, norm)

    def _run(self, i: int, x: torch.Tensor, frozen: bool) -> torch.Tensor:
        if not frozen:
            return self.ops[i](x)
        with torch.no_grad():
            return self.ops[i](x)


class _SharedValue:
    """The input of an edge's forward in progress and its ReLU, while the edge runs."""

    __slots__ = ("input", "output")

    def __init__(self) -> None:
        self.input: torch.Tensor | None = None
        self.output: torch.Tensor | None = None


class SharedReLU(nn.ReLU):
    """A candidate's leading ReLU: the edge's shared ``relu(x)`` when given that ``x``."""

    def __init__(self, shared: _SharedValue) -> None:
        super().__init__()
        self.shared = shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x is self.shared.input and self.shared.output is not None:
            return self.shared.output
        return super().forward(x)


def use_folded_norms(module: nn.Module, enabled: bool) -> None:
    """Fold the trailing BatchNorms of every edge in ``module`` into its weighted sum (on), or
    run each candidate as written (off: for comparisons)."""
    for sub in module.modules():
        if isinstance(sub, MixedOp):
            sub.fold_norms = enabled


def set_relu_sharing(module: nn.Module, enabled: bool) -> None:
    """Switch the shared ReLU of every edge in ``module`` on or off (off: each candidate
    computes its own, as the original DARTS code does; for comparisons)."""
    for sub in module.modules():
        if isinstance(sub, MixedOp):
            sub.relu_sharing = enabled


def _share_leading_relu(op: nn.Module, shared: _SharedValue) -> bool:
    """Make the leading ``nn.ReLU`` of ``op`` (a chain of ``nn.Sequential``, nested ones
    included) a :class:`SharedReLU`; whether ``op`` has one."""
    if not isinstance(op, nn.Sequential) or not len(op):
        return False
    if type(op[0]) is nn.ReLU and not op[0].inplace:
        op[0] = SharedReLU(shared)
        return True
    return _share_leading_relu(op[0], shared)
