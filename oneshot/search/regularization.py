"""Regularization terms of the architecture parameters (``algorithm.regularization``).

``beta``: the Beta-Decay regularization of beta-DARTS (Ye et al., CVPR 2022), the mean over choice
points of ``logsumexp(alpha)``, whose gradient ``softmax(alpha) / choice points`` keeps the
activated architecture parameters (the softmax rows) from growing large and peaked. Its weight
is ramped linearly over the epochs from 0, as in the reference code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, MutableMapping, Sequence

import torch

from oneshot.errors import ConfigError

REGULARIZATIONS = ("none", "beta")


def beta_decay(alphas: Sequence[torch.Tensor]) -> torch.Tensor:
    """``mean_k logsumexp(alpha_k)`` over the choice points' alpha rows ``alphas``."""
    return torch.stack([torch.logsumexp(alpha, dim=-1) for alpha in alphas]).mean()


def ramp(epoch: int, epochs: int, weight: float) -> float:
    """The weight of epoch ``epoch`` (0-based) of ``epochs``: ``weight * epoch / epochs``, 0 at the
    first epoch and ``weight`` where the last epoch ends (the reference code's ``50 * epoch / 100``
    is ``weight=25`` over 50 epochs)."""
    return weight * epoch / max(1, epochs)


@dataclass(frozen=True)
class BetaDecay:
    """``ramp(epoch) * beta_decay(alphas)``, added to the architecture loss."""

    weight: float

    def __call__(self, alphas: Sequence[torch.Tensor], epoch: int,
                 epochs: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The weighted term (detached) and its gradient with respect to each of ``alphas``."""
        with torch.enable_grad():
            leaves = [alpha.detach().requires_grad_() for alpha in alphas]
            term = ramp(epoch, epochs, self.weight) * beta_decay(leaves)
            grads = torch.autograd.grad(term, leaves)
        return term.detach(), list(grads)


ArchRegularization = BetaDecay


def pop_regularization(options: MutableMapping[str, Any]) -> ArchRegularization | None:
    """Take ``regularization`` and ``beta_weight`` out of an algorithm's options; the term they
    choose, or ``None`` for ``regularization: none`` (or an algorithm without the option)."""
    name = options.pop("regularization", "none")
    weight = options.pop("beta_weight", None)
    if name not in REGULARIZATIONS:
        raise ConfigError(f"unknown algorithm.regularization '{name}'; choose one of: "
                          f"{', '.join(REGULARIZATIONS)}")
    if name == "none":
        return None
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (math.isfinite(weight) and weight >= 0):
        raise ConfigError(f"algorithm.beta_weight must be a number >= 0, got {weight!r}")
    return BetaDecay(float(weight))
