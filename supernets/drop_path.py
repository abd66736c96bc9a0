"""Drop-path (Larsson et al., 2017): drop whole paths of a sample while retraining a network."""

from __future__ import annotations

import torch
from torch import nn

from supernets.errors import SpaceError


def drop_path(x: torch.Tensor, p: float | torch.Tensor, training: bool) -> torch.Tensor:
    """Zero whole samples with probability ``p`` and scale the kept ones by ``1 / (1 - p)``.

    One Bernoulli draw per sample (mask of shape ``[N, 1, 1, 1]``); identity when not training.
    ``p`` may be a 0-dim tensor, so that changing it does not recompile a compiled network; it
    is then not range-checked here.
    """
    if not isinstance(p, torch.Tensor) and not 0.0 <= p < 1.0:
        raise SpaceError(f"drop-path probability must be in [0, 1), got {p}")
    if not training:
        return x
    keep = 1.0 - torch.as_tensor(p, dtype=torch.float32, device=x.device)
    mask = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) < keep
    return x * mask / keep


class DropPathNetwork(nn.Module):
    """A network whose drop-path probability the training loop sets, e.g. ramped per epoch.

    The probability lives in the non-persistent buffer ``drop_prob``, so changing it does not make
    a compiled network build a new graph.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("drop_prob", torch.zeros(()), persistent=False)

    @property
    def drop_path_prob(self) -> float:
        """Drop-path probability in training."""
        return float(self.drop_prob)

    @drop_path_prob.setter
    def drop_path_prob(self, p: float) -> None:
        if not 0.0 <= p < 1.0:
            raise SpaceError(f"drop-path probability must be in [0, 1), got {p}")
        self.drop_prob.fill_(p)
