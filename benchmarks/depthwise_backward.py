"""The depthwise convolutions of the DARTS candidates: forward, the input gradient torch
computes against the flipped-kernel convolution :class:`supernets.depthwise.DepthwiseConv2d` runs,
and torch's weight gradient against our C kernel's (:mod:`supernets.native.depthwise`, which the
class runs for every kernel but the undilated 3x3, whose torch kernel is fast; "n/a" where the
kernel does not apply or is not available).

Per kernel (3x3, 5x5, dilated 3x3, dilated 5x5: the depthwise halves of sep_conv and dil_conv),
the best of ``--repeats`` means of ``--calls`` calls, channels_last, on random tensors:

    python benchmarks/depthwise_backward.py --batch 64 --channels 16 --size 32
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Callable

import torch
from torch.nn import functional as F

from supernets.native.depthwise import depthwise_weight_grad

KERNELS = ((3, 1), (5, 1), (3, 2), (5, 2))
"""(kernel size, dilation) of the depthwise convolutions in the DARTS space's candidates."""


def best_microseconds(call: Callable[[], object], calls: int, repeats: int) -> float:
    """The best over ``repeats`` of the mean time of ``calls`` calls, in microseconds."""
    for _ in range(3):
        call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def measure(batch: int, channels: int, size: int, calls: int, repeats: int) -> list[dict[str, float]]:
    """Per kernel: forward, torch's input gradient, the flipped-kernel convolution, torch's and
    our C kernel's weight gradient (us; the last NaN where the C kernel does not run)."""
    rows = []
    generator = torch.Generator().manual_seed(0)
    for kernel, dilation in KERNELS:
        padding = dilation * (kernel - 1) // 2
        x = torch.randn(batch, channels, size, size, generator=generator).contiguous(
            memory_format=torch.channels_last)
        grad = torch.randn(x.shape, generator=generator).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(channels, 1, kernel, kernel, generator=generator)
        flipped = weight.flip((2, 3))

        def torch_backward(input_grad: bool) -> Callable[[], object]:
            """torch's input gradient (``True``) or weight gradient (``False``) alone."""
            return lambda: torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], [padding] * 2, [dilation] * 2, False, [0, 0],
                channels, [input_grad, not input_grad, False])

        rows.append({
            "kernel": kernel, "dilation": dilation,
            "forward": best_microseconds(
                lambda: F.conv2d(x, weight, None, 1, padding, dilation, channels), calls, repeats),
            "torch_input_grad": best_microseconds(torch_backward(True), calls, repeats),
            "flipped_conv": best_microseconds(
                lambda: F.conv2d(grad, flipped, None, 1, padding, dilation, channels), calls, repeats),
            "torch_weight_grad": best_microseconds(torch_backward(False), calls, repeats),
            "native_weight_grad": (
                best_microseconds(lambda: depthwise_weight_grad(grad, x, kernel, 1, padding, dilation),
                                  calls, repeats)
                if depthwise_weight_grad(grad, x, kernel, 1, padding, dilation) is not None
                else float("nan")),
        })
    return rows


def kernel_args(description: str, argv: list[str]) -> argparse.Namespace:
    """The options of a kernel timing: map sizes, ``--calls``, ``--repeats``."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    return parser.parse_args(argv)


def sizes_line(kind: str, args: argparse.Namespace) -> str:
    """``kind, batch B, C channels, SxS, channels_last, T threads``."""
    return (f"{kind}, batch {args.batch}, {args.channels} channels, {args.size}x{args.size}, "
            f"channels_last, {torch.get_num_threads()} threads")


def main(argv: list[str]) -> None:
    args = kernel_args(__doc__, argv)
    print(f"{sizes_line('depthwise', args)} (microseconds)")
    for row in measure(args.batch, args.channels, args.size, args.calls, args.repeats):
        print(f"  {row['kernel']}x{row['kernel']} dilation {row['dilation']}: forward "
              f"{row['forward']:.0f} | torch's input gradient {row['torch_input_grad']:.0f} | "
              f"flipped-kernel convolution {row['flipped_conv']:.0f} "
              f"({row['torch_input_grad'] / row['flipped_conv']:.1f}x faster) | "
              f"torch's weight gradient {row['torch_weight_grad']:.0f} | ours "
              f"{'n/a' if math.isnan(row['native_weight_grad']) else round(row['native_weight_grad'])}")


if __name__ == "__main__":
    main(sys.argv[1:])
