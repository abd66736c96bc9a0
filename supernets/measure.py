"""Model size and cost: parameter counts and FLOPs of one forward pass."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from supernets.spaces import create_network

AUXILIARY_HEAD = "auxiliary_head"


def count_parameters(module: nn.Module, *, skip: Sequence[str] = (AUXILIARY_HEAD,)) -> int:
    """Number of parameters, leaving out the submodules named in ``skip`` (the auxiliary head)."""
    return sum(p.numel() for name, p in module.named_parameters()
               if name.split(".", 1)[0] not in skip)


def count_flops(module: nn.Module, input_size: Sequence[int] = (1, 3, 32, 32)) -> int:
    """FLOPs of one eval-mode forward pass of a zero input, as ``torch.utils.flop_counter`` counts.

    The counter covers matrix multiplications and convolutions at 2 FLOPs per multiply-add
    (so multiply-adds = FLOPs / 2); BatchNorm, activations, pooling and additions are not
    counted. The module's training mode is restored afterwards.
    """
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(torch.zeros(*input_size, device=device))
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())


def derived_params(space: str, genotype: Any, num_classes: int = 10, *,
                   space_options: Mapping[str, Any] | None = None) -> int:
    """Parameters of the network ``genotype`` is retrained as, at its space's defaults, without
    the auxiliary head (DARTS: 36 channels, 20 cells; a fixed network: as searched with
    ``space_options``). Built on the meta device, so nothing is allocated.
    """
    with torch.device("meta"):
        network = create_network(space, genotype, num_classes=num_classes,
                                 space_options=space_options)
    return count_parameters(network)
