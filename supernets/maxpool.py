"""Max pooling that keeps no indices for its backward pass.

``nn.MaxPool2d`` stores an int64 index per output element for the backward pass: twice the bytes
of the float32 output, about 9% of what a DARTS supernet step stores. :class:`MaxPool` keeps
only its input (which the edge's other candidates keep anyway) and its output (which the
BatchNorm after it keeps) and finds each window's maximum again in the backward pass. Values
and gradients are those of ``nn.MaxPool2d``, ties included (the first maximum in scan order).

On channels-last CPU maps whose channels fill the C kernels' vectors both passes are our C
kernels (:mod:`supernets.native.pooling`): torch's channels-last kernel works pixel by pixel, and
at 16 channels a 3x3 pool took ten times as long as a ReLU of the same map. Elsewhere torch's
``max_pool2d`` runs, and the backward finds the indices with it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from supernets.native import capturing_a_graph, pooling


class _MaxPoolFunction(torch.autograd.Function):
    """``max_pool2d`` whose backward finds the maxima again from the saved input."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel_size: int, stride: int, padding: int,
                native: bool) -> torch.Tensor:
        if native:
            out = pooling.max_pool(x, kernel_size, stride, padding)
        else:
            out = F.max_pool2d(x, kernel_size, stride, padding)
        ctx.save_for_backward(x, out)
        ctx.options = (kernel_size, stride, padding, native)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, out = ctx.saved_tensors
        kernel_size, stride, padding, native = ctx.options
        if native:
            grad_x = pooling.max_pool_backward(x, out, grad, kernel_size, stride, padding)
        else:
            with torch.no_grad():
                _, indices = F.max_pool2d(x, kernel_size, stride, padding, return_indices=True)
            grad_x = torch.ops.aten.max_pool2d_with_indices_backward(
                grad, x, [kernel_size] * 2, [stride] * 2, [padding] * 2, [1, 1], False, indices)
        return grad_x, None, None, None, None


class MaxPool(nn.MaxPool2d):
    """``nn.MaxPool2d(kernel_size, stride, padding)`` (square, no dilation) that stores its input
    and output instead of the indices for the backward pass, computed by the C kernels where
    they apply and ``native`` is on (:func:`supernets.native.use_native_kernels`); plain
    ``max_pool2d`` while a graph is recorded (``torch.compile``, which plans its own memory,
    tracing, export)."""

    native = True

    def __init__(self, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__(kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if capturing_a_graph():
            return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)
        native = self.native and pooling.applies(x)
        if not (torch.is_grad_enabled() and x.requires_grad):
            if native:
                return pooling.max_pool(x, self.kernel_size, self.stride, self.padding)
            return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)
        return _MaxPoolFunction.apply(x, self.kernel_size, self.stride, self.padding, native)
