"""Score an architecture of a trained supernet: recalibrate BatchNorm, then count correct labels.

A supernet's running BatchNorm statistics mix every path it trained; single-path searches
(Guo et al., 2020) recompute them for each candidate on a few training batches first.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from supernets.mixed import ArchRow

Batch = tuple[torch.Tensor, torch.Tensor]


def _norms(module: nn.Module) -> list[_BatchNorm]:
    return [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@contextlib.contextmanager
def preserved_batchnorm(module: nn.Module) -> Iterator[None]:
    """Restore every BatchNorm's running statistics and momentum (and the module's training
    mode) on exit."""
    saved = [(m.momentum, {k: v.clone() for k, v in m.state_dict().items()})
             for m in _norms(module)]
    training = module.training
    try:
        yield
    finally:
        for m, (momentum, state) in zip(_norms(module), saved):
            m.momentum = momentum
            m.load_state_dict(state)
        module.train(training)


def recalibrate_batchnorm(supernet: nn.Module, arch: Mapping[str, ArchRow],
                          batches: Sequence[Batch]) -> None:
    """Replace the running statistics by the exact averages over ``batches`` run through ``arch``
    (training-mode forward passes without gradients; BatchNorms off the path are reset)."""
    for m in _norms(supernet):
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    supernet.train()
    with torch.no_grad():
        for x, _ in batches:
            supernet(x, arch)


def correct_predictions(supernet: nn.Module, arch: Mapping[str, ArchRow],
                        batches: Sequence[Batch]) -> tuple[torch.Tensor, torch.Tensor]:
    """Correct top-1 predictions of ``arch`` over ``batches`` and the number of labels (in
    eval mode)."""
    supernet.eval()
    correct = torch.zeros((), dtype=torch.long, device=batches[0][1].device)
    with torch.no_grad():
        for x, y in batches:
            correct += (supernet(x, arch).argmax(dim=-1) == y).sum()
    return correct, torch.tensor(sum(len(y) for _, y in batches), device=correct.device)
