"""Auxiliary skip connections (DARTS-, Chu et al., ICLR 2021) on a supernet's operation choices.

:func:`add_auxiliary_skips` gives every :class:`~supernets.choices.OpChoice` of a supernet an
extra branch, so that the choice returns ``mix(x) + beta * skip(x)``: the mix of its
candidates as before, plus a skip connection whose weight ``beta`` is outside the architecture
(the algorithm decays it to zero over the search, :func:`set_auxiliary_skip_weight`). The skip
is built in the supernet, one per choice module:

- a fresh copy of the choice's ``skip_connect`` candidate (re-initialized): an identity on a
  stride-1 edge and, in the DARTS space, the factorized reduction on a stride-2 edge, as the
  DARTS- reference code builds it;
- else an identity, which needs the choice to keep the tensor's shape (checked on every
  call).

The branch is a child module of the choice (``auxiliary_skip``, so its weights are trained and
saved with the supernet) added by a forward hook; the genotype, the derive rule and the fixed
network of a genotype do not change.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from supernets.choices import OpChoice
from supernets.errors import SpaceError

SKIP_CANDIDATE = "skip_connect"


class AuxiliarySkip(nn.Module):
    """``beta * op(x)``: one choice's auxiliary skip; ``beta`` is a buffer (not saved)."""

    beta: torch.Tensor

    def __init__(self, label: str, op: nn.Module) -> None:
        super().__init__()
        self.label = label
        self.op = op
        self.register_buffer("beta", torch.ones(()), persistent=False)

    def forward(self, x: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
        """``mixed + beta * op(x)``; the skip must have the mix's shape."""
        skip = self.op(x)
        if skip.shape != mixed.shape:
            raise SpaceError(f"choice '{self.label}' maps {tuple(x.shape)} to "
                             f"{tuple(mixed.shape)}, so an identity cannot be its auxiliary "
                             f"skip; give it a '{SKIP_CANDIDATE}' candidate that matches")
        return mixed + self.beta * skip

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


def add_auxiliary_skips(supernet: nn.Module) -> list[AuxiliarySkip]:
    """Give every operation choice of ``supernet`` an auxiliary skip with weight 1.

    Returns the skips, in module order. A supernet that already has them is refused.
    """
    choices = [m for m in supernet.modules() if isinstance(m, OpChoice)]
    if not choices:
        raise SpaceError("the auxiliary skip needs operation choices (OpChoice); this supernet "
                         "has none")
    skips = []
    for choice in choices:
        if isinstance(getattr(choice, "auxiliary_skip", None), AuxiliarySkip):
            raise SpaceError(f"choice '{choice.label}' already has an auxiliary skip")
        skip = AuxiliarySkip(choice.label, _skip_op(choice))
        choice.add_module("auxiliary_skip", skip)
        choice.register_forward_hook(_add_skip)
        skips.append(skip)
    return skips


def auxiliary_skips(supernet: nn.Module) -> list[AuxiliarySkip]:
    """The auxiliary skips of ``supernet`` (empty without them)."""
    return [m for m in supernet.modules() if isinstance(m, AuxiliarySkip)]


def set_auxiliary_skip_weight(supernet: nn.Module, beta: float) -> None:
    """Set the weight ``beta`` of every auxiliary skip of ``supernet``."""
    skips = auxiliary_skips(supernet)
    if not skips:
        raise SpaceError("this supernet has no auxiliary skips; add them with "
                         "add_auxiliary_skips first")
    with torch.no_grad():
        for skip in skips:
            skip.beta.fill_(beta)


def _skip_op(choice: OpChoice) -> nn.Module:
    """A fresh copy of the choice's skip candidate, or an identity."""
    if SKIP_CANDIDATE in choice.candidates:
        op = copy.deepcopy(choice.ops[choice.candidates.index(SKIP_CANDIDATE)])
        for module in op.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        return op
    return nn.Identity()


def _add_skip(choice: OpChoice, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
    """The forward hook: the choice's output plus its auxiliary skip of the input."""
    return choice.auxiliary_skip(args[0], output)
