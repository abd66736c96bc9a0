"""A/B in one process: one shared ReLU per edge against every candidate computing its own.

Both variants are the same supernet (same weights): ``old`` switches the sharing off on every
edge, so each ReLU-first candidate computes its own ``relu(x)``. The variants alternate step by
step (the order flips every round, after an untimed round) so that the machine's load weighs on
both alike. A step is the first-order DARTS step maths of ``profile_darts_step.py``. Also prints
the bytes autograd stores in one forward of each variant, and in the architecture step's forward,
which runs with the weights as constants.

    python benchmarks/shared_relu_ab.py                       # batch 32, 8 ch, 5 cells, 5 rounds
    python benchmarks/shared_relu_ab.py --batch 64 --channels 16 --layers 8 --rounds 3
"""

from __future__ import annotations

import contextlib
import sys

import torch
from torch import nn

from oneshot.search.architecture import ArchitectureParameters, weights_as_constants
from profile_darts_step import ab_setup, alternating_step_seconds, print_old_new
from supernets.mixed import set_relu_sharing


def saved_bytes(model: nn.Module, arch: ArchitectureParameters, x: torch.Tensor,
                weights_need_grad: bool = True) -> int:
    """Bytes autograd keeps for backward in one forward of ``model``."""
    total = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        total[0] += tensor.numel() * tensor.element_size()
        return tensor

    weights = contextlib.nullcontext() if weights_need_grad else weights_as_constants(model)
    with weights, torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(x, arch.softmax())
    return total[0]


def main(argv: list[str]) -> None:
    args, setup = ab_setup(argv, __doc__.splitlines()[0], rounds=5)
    model, arch, _, batches = setup
    for variant in ("old", "new"):
        set_relu_sharing(model, variant == "new")
        gib = saved_bytes(model, arch, batches[0][0]) / 2**30
        print(f"{variant}: autograd keeps {gib:.3f} GiB per forward")
    frozen_gib = saved_bytes(model, arch, batches[1][0], weights_need_grad=False) / 2**30
    print(f"new, weights as constants (the architecture step): {frozen_gib:.3f} GiB per forward")
    seconds = alternating_step_seconds(
        setup, ("old", "new"), lambda variant: set_relu_sharing(model, variant == "new"), args.rounds)
    print_old_new(args, seconds)


if __name__ == "__main__":
    main(sys.argv[1:])
