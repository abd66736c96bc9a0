"""BatchNorm with each batch's own statistics, for evaluating one path of a supernet.

A supernet trained on sampled paths (or mixtures whose weights move) gathers running statistics
over every path it ran; a single path evaluated with them sees the wrong mean and variance.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@contextlib.contextmanager
def batch_statistics(module: nn.Module) -> Iterator[None]:
    """Normalize with each batch's statistics and leave the running statistics untouched."""
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in norms]
    for m in norms:
        m.training, m.track_running_stats = True, False
    try:
        yield
    finally:
        for m, (training, track) in zip(norms, saved):
            m.training, m.track_running_stats = training, track
