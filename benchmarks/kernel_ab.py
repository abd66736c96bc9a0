"""A/B in one process: the DARTS step with one of our CPU kernels (``new``) against torch's (``old``).

``depthwise``: the depthwise convolutions of :class:`supernets.depthwise.DepthwiseConv2d` (the
flipped-kernel input gradient, dilated stride-2 convolutions on the even grid) against torch's
depthwise convolution. ``batchnorm``: the BatchNorms of :class:`supernets.batchnorm.BatchNorm2d`
(maps of fewer than 16 channels normalised through their wide channels-last view) against
``nn.BatchNorm2d``'s kernels throughout; only supernets with fewer than 16 channels in some cell
differ (the small configuration's first cells have 8). ``foldednorm``: every edge's weighted sum
with its candidates' trailing BatchNorms folded in (:mod:`supernets.folded_norm`) against each
candidate normalised, then summed. ``native``: our C kernels (:mod:`supernets.native`: the
depthwise weight gradients, max and average pooling) against torch's.

Both variants are the same supernet (same weights); the variants alternate step by step (the
order flips every round, after an untimed round) so that the machine's load weighs on both alike.
A step is the first-order DARTS step maths of ``profile_darts_step.py``.

    python benchmarks/kernel_ab.py depthwise                # batch 32, 8 ch, 5 cells, 5 rounds
    python benchmarks/kernel_ab.py depthwise --batch 64 --channels 16 --layers 8 --rounds 3
    python benchmarks/kernel_ab.py batchnorm
    python benchmarks/kernel_ab.py foldednorm --batch 64 --channels 16 --layers 8 --rounds 3
    python benchmarks/kernel_ab.py native --batch 64 --channels 16 --layers 8 --rounds 3
"""

from __future__ import annotations

import sys
from typing import Callable

from torch import nn

from profile_darts_step import run_old_new
from supernets.batchnorm import use_batchnorm_wide_view
from supernets.depthwise import use_depthwise_fast_paths
from supernets.mixed import use_folded_norms
from supernets.native import use_native_kernels

KERNELS: dict[str, Callable[[nn.Module, bool], None]] = {
    "depthwise": use_depthwise_fast_paths,
    "batchnorm": use_batchnorm_wide_view,
    "foldednorm": use_folded_norms,
    "native": use_native_kernels,
}


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in KERNELS:
        raise SystemExit(f"usage: kernel_ab.py {{{','.join(KERNELS)}}} [--batch B --channels C "
                         "--layers L --rounds R]")
    run_old_new(argv[1:], f"{__doc__.splitlines()[0]} ({argv[0]})", KERNELS[argv[0]])


if __name__ == "__main__":
    main(sys.argv[1:])
