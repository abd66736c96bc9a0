"""Recompute instead of store: a part of a supernet whose activations are rebuilt in backward.

``space.recompute=edge`` (or ``cell``) runs every mixed edge (or every cell) through
:func:`recomputed`, a non-reentrant :func:`torch.utils.checkpoint.checkpoint`: the forward keeps
only the part's inputs, and the backward runs the part again to rebuild what it needs. The
maths is unchanged; the cost is one more forward of the part per backward.
``space.recompute=weighted`` recomputes, per edge, only the candidates with weights (the
convolutions) and stores what the parameter-free ones (pools, identity) need: they keep one or
two maps each where a separable convolution keeps about ten, but a pool with its BatchNorm costs
about as much time as a convolution to run again.

Two things make the second run the same computation as the first:

- the weights and buffers the part held during the forward are put back for the second run, so
  a forward under :func:`torch.func.functional_call` (second-order DARTS's virtual step) is
  recomputed with the weights it ran with, not the module's own; so is the architecture bound to
  the part's choices (the supernet unbinds it when its forward returns);
- its BatchNorms update copies of their running statistics, which the forward already updated
  once (in training they normalize by the batch, so the output is the same; switching
  ``track_running_stats`` off instead would change what BatchNorm saves for backward, which
  the checkpoint refuses).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, TypeVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from supernets.errors import SpaceError

RECOMPUTE_MODES = ("none", "weighted", "edge", "cell")

T = TypeVar("T")
_Slot = tuple[dict[str, Any], str]


def check_recompute(recompute: object) -> str:
    """``recompute`` if it is one of :data:`RECOMPUTE_MODES`, else a :class:`SpaceError`."""
    if recompute not in RECOMPUTE_MODES:
        raise SpaceError(f"recompute must be one of {', '.join(RECOMPUTE_MODES)} (none: store "
                         "every activation; the others recompute the convolutions, every edge or "
                         f"every cell in backward), got {recompute!r}")
    return str(recompute)


class RecomputeMode:
    """For a search cell (an ``nn.Module``): its ``recompute`` mode, checked when set; setting
    it also tells the cell's edges whether to recompute their candidates with weights
    (``weighted``: every submodule with a ``recompute_weighted`` attribute)."""

    _recompute_mode = "none"

    @property
    def recompute(self) -> str:
        return self._recompute_mode

    @recompute.setter
    def recompute(self, mode: str) -> None:
        self._recompute_mode = check_recompute(mode)
        for sub in self.modules():  # type: ignore[attr-defined]
            if hasattr(sub, "recompute_weighted"):
                sub.recompute_weighted = mode == "weighted"


def recomputed(module: nn.Module, fn: Callable[..., T], *inputs: Any) -> T:
    """``fn(*inputs)``, a computation of ``module``, with its activations recomputed in backward.

    Without gradient tracking there is nothing to store, and ``fn`` simply runs.
    """
    if not torch.is_grad_enabled():
        return fn(*inputs)
    slots, statistics, binding = _parts(module)
    tensors = [table[key] for table, key in slots]
    rows = None if binding is None else binding.rows
    runs = [0]

    def run(*args: Any) -> T:
        held = tensors if not runs[0] else [t.clone() if i in statistics else t
                                            for i, t in enumerate(tensors)]
        runs[0] += 1
        with _holding(slots, held), _bound(binding, rows):
            return fn(*args)

    return checkpoint(run, *inputs, use_reentrant=False)


def _parts(module: nn.Module) -> tuple[list[_Slot], set[int], Any]:
    """The parameter and buffer slots of ``module``, which of them are BatchNorm running
    statistics, and its choices' architecture binding."""
    slots: list[_Slot] = []
    statistics: set[int] = set()
    binding = None
    for sub in module.modules():
        slots.extend((sub._parameters, key) for key, value in sub._parameters.items()
                     if value is not None)
        norm = isinstance(sub, nn.modules.batchnorm._BatchNorm)
        for key, value in sub._buffers.items():
            if value is not None:
                if norm:
                    statistics.add(len(slots))
                slots.append((sub._buffers, key))
        binding = binding if binding is not None else getattr(sub, "_binding", None)
    return slots, statistics, binding


@contextlib.contextmanager
def _holding(slots: list[_Slot], tensors: list[torch.Tensor]) -> Iterator[None]:
    """Put ``tensors`` into their slots while inside (nothing moves in the first run)."""
    swapped = []
    for (table, key), tensor in zip(slots, tensors):
        if table[key] is not tensor:
            swapped.append((table, key, table[key]))
            table[key] = tensor
    try:
        yield
    finally:
        for table, key, previous in reversed(swapped):
            table[key] = previous


@contextlib.contextmanager
def _bound(binding: Any, rows: Any) -> Iterator[None]:
    if binding is None:
        yield
        return
    previous, binding.rows = binding.rows, rows
    try:
        yield
    finally:
        binding.rows = previous
