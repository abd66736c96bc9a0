"""Average pooling by our C kernels on channels-last CPU maps (:mod:`supernets.native.pooling`).

torch's channels-last kernel works pixel by pixel: at 16 channels a 3x3 average pool took about
nine times as long as a ReLU of the same map. :class:`AvgPool` is ``nn.AvgPool2d`` (square, no
ceil mode, no divisor override) computed by the C kernels, forward and backward, where they
apply (a channels-last float32 or float64 CPU map whose channels fill their vectors, no graph
being recorded); elsewhere, and with ``native`` off, it is ``nn.AvgPool2d`` itself. The backward
needs only the input's shape, so nothing is stored.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from supernets.native import pooling


class _AvgPoolFunction(torch.autograd.Function):
    """``avg_pool2d`` by the C kernels (the caller checked that they apply)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel_size: int, stride: int, padding: int,
                count_include_pad: bool) -> torch.Tensor:
        ctx.input_shape = x.shape
        ctx.options = (kernel_size, stride, padding, count_include_pad)
        return pooling.avg_pool(x, *ctx.options)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_x = pooling.avg_pool_backward(grad, ctx.input_shape, *ctx.options)
        return grad_x, None, None, None, None


class AvgPool(nn.AvgPool2d):
    """``nn.AvgPool2d(kernel_size, stride, padding, count_include_pad=...)`` by the C kernels
    where they apply and ``native`` is on (:func:`supernets.native.use_native_kernels`)."""

    native = True

    def __init__(self, kernel_size: int, stride: int, padding: int,
                 count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride=stride, padding=padding,
                         count_include_pad=count_include_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.native or not pooling.applies(x):
            return super().forward(x)
        options = (self.kernel_size, self.stride, self.padding, self.count_include_pad)
        if not (torch.is_grad_enabled() and x.requires_grad):
            return pooling.avg_pool(x, *options)
        return _AvgPoolFunction.apply(x, *options)
