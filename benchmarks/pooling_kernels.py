"""The pools of the DARTS candidates: torch's channels-last kernels against our C kernels
(:mod:`supernets.native.pooling`, which :class:`supernets.maxpool.MaxPool` and
:class:`supernets.avgpool.AvgPool` run on channels-last CPU maps whose channels fill a vector).

Per pool (3x3 max, 3x3 average without the padding in the count; stride 1, padding 1), the forward
alone and the forward with its backward, the best of ``--repeats`` means of ``--calls`` calls,
channels_last, on random tensors. torch's max pool with its backward is ``nn.MaxPool2d``, which
keeps its indices; ours finds the maxima again.

    python benchmarks/pooling_kernels.py --batch 64 --channels 16 --size 32
"""

from __future__ import annotations

import sys
from typing import Callable

import torch
from torch import nn

from depthwise_backward import best_microseconds, kernel_args, sizes_line
from supernets.avgpool import AvgPool
from supernets.maxpool import MaxPool

POOLS: dict[str, tuple[Callable[[], nn.Module], Callable[[], nn.Module]]] = {
    "max 3x3": (lambda: nn.MaxPool2d(3, 1, 1), lambda: MaxPool(3, 1, 1)),
    "average 3x3": (lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
                    lambda: AvgPool(3, 1, 1, count_include_pad=False)),
}


def measure(batch: int, channels: int, size: int, calls: int,
            repeats: int) -> dict[str, dict[str, float]]:
    """Per pool: torch's and our forward, and forward plus backward (us)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, size, size, generator=generator).contiguous(
        memory_format=torch.channels_last)
    leaf = x.clone().requires_grad_()
    grad = torch.randn(x.shape, generator=generator).contiguous(memory_format=torch.channels_last)
    rows = {}
    for name, builds in POOLS.items():
        row = {}
        for side, build in zip(("torch", "ours"), builds):
            pool = build()
            row[f"{side}_forward"] = best_microseconds(lambda: pool(x), calls, repeats)
            row[f"{side}_both"] = best_microseconds(lambda: pool(leaf).backward(grad), calls, repeats)
        rows[name] = row
    return rows


def main(argv: list[str]) -> None:
    args = kernel_args(__doc__, argv)
    print(f"{sizes_line('pooling', args)} (microseconds, torch's -> ours)")
    for name, row in measure(args.batch, args.channels, args.size, args.calls,
                             args.repeats).items():
        print(f"  {name}: forward {row['torch_forward']:.0f} -> {row['ours_forward']:.0f} | "
              f"forward and backward {row['torch_both']:.0f} -> {row['ours_both']:.0f}")


if __name__ == "__main__":
    main(sys.argv[1:])
