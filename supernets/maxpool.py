"""Max pooling that keeps no indices for its backward pass.

``nn.MaxPool2d`` stores an int64 index per output element for the backward pass: twice the bytes
of the float32 output, about 9% of what a DARTS supernet step stores. :class:`MaxPool` keeps
only its input (which the edge's other candidates keep anyway) and finds the indices again in
the backward pass, one cheap pooling per edge. Values and gradients are
those of ``nn.MaxPool2d``, ties included (the same kernel picks the same index).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class _MaxPoolFunction(torch.autograd.Function):
    """``max_pool2d`` whose backward recomputes the argmax indices from the saved input."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel_size: int, stride: int, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.options = (kernel_size, stride, padding)
        return F.max_pool2d(x, kernel_size, stride, padding)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:
        (x,) = ctx.saved_tensors
        kernel_size, stride, padding = ctx.options
        with torch.no_grad():
            _, indices = F.max_pool2d(x, kernel_size, stride, padding, return_indices=True)
        grad_x = torch.ops.aten.max_pool2d_with_indices_backward(
            grad, x, [kernel_size] * 2, [stride] * 2, [padding] * 2, [1, 1], False, indices)
        return grad_x, None, None, None


class MaxPool(nn.MaxPool2d):
    """``nn.MaxPool2d(kernel_size, stride, padding)`` (square, no dilation) that stores its input
    instead of the indices for the backward pass; plain ``max_pool2d`` when no gradient is
    needed or under ``torch.compile``, which plans its own memory."""

    def __init__(self, kernel_size: int, stride: int, padding: int) -> None:
        super().__init__(kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad) or torch.compiler.is_compiling():
            return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)
        return _MaxPoolFunction.apply(x, self.kernel_size, self.stride, self.padding)
