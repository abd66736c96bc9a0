"""Architecture parameters: one row of logits (alpha) per choice point of a search space."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn


class ArchitectureParameters(nn.Module):
    """Alpha logits per choice-point label, registered so checkpoints and devices follow them."""

    def __init__(self, choice_points: Mapping[str, Sequence[str]], *, init_std: float = 1e-3) -> None:
        super().__init__()
        self.candidates = {label: list(names) for label, names in choice_points.items()}
        self.alphas = nn.ParameterDict(
            {label: nn.Parameter(init_std * torch.randn(len(names)))
             for label, names in self.candidates.items()})

    def parameters_list(self) -> list[nn.Parameter]:
        """The alpha parameters in label order."""
        return [self.alphas[label] for label in self.candidates]

    def softmax(self) -> dict[str, torch.Tensor]:
        """The architecture as mixing weights: ``label -> softmax(alpha)``."""
        return {label: torch.softmax(self.alphas[label], dim=-1) for label in self.candidates}

    def groups(self) -> dict[str, list[str]]:
        """Labels grouped by their prefix before the first ``/`` (e.g. ``normal``, ``reduce``)."""
        grouped: dict[str, list[str]] = {}
        for label in self.candidates:
            grouped.setdefault(label.split("/", 1)[0], []).append(label)
        return grouped
