"""The fixed network as retraining uses it: logits and no auxiliary head, drop-path settable."""

from __future__ import annotations

import torch
from torch import nn

from supernets.choices import DropPathOp
from supernets.drop_path import DropPathNetwork


class FixedNetwork(DropPathNetwork):
    """Wraps a space's fixed network for retraining: ``forward(x)`` returns ``(logits, None)``.

    Setting :attr:`drop_path_prob` sets it on every chosen operation the space marked for
    drop-path (:class:`~supernets.choices.DropPathOp`).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self._droppable = [m for m in network.modules() if isinstance(m, DropPathOp)]

    @DropPathNetwork.drop_path_prob.setter  # type: ignore[attr-defined]
    def drop_path_prob(self, p: float) -> None:
        DropPathNetwork.drop_path_prob.fset(self, p)  # type: ignore[attr-defined]
        for module in self._droppable:
            module.drop_prob.fill_(p)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.network(x), None
