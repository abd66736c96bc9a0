"""Depthwise convolution whose input gradient is one more depthwise convolution.

On the CPU, the backward pass torch runs for a depthwise convolution is many times slower than
its forward pass when the convolution is dilated or 5x5: at batch 64, 16 channels, 32x32, the
input gradient of a dilated 3x3 took 1.0 ms against 0.1 ms for the forward convolution, 1.9 ms
for a dilated 5x5 (``benchmarks/depthwise_backward.py``). Every separable and dilated candidate
of the DARTS space runs one, in both search steps. For a stride-1 convolution that keeps the
size (``2 * padding == dilation * (kernel_size - 1)``) the input gradient is the same
convolution of the output gradient with the kernel flipped in both spatial axes, which runs at
forward speed. :class:`DepthwiseConv2d` takes that path on the CPU; other strides and
paddings, autocast, ``torch.compile`` and other devices keep torch's own kernels.

The weight gradient has the same problem (a 5x5 one took 2.3 ms against 0.12 ms for a 3x3) and
no such identity, so on the CPU it is our C kernel (:mod:`supernets.native.depthwise`) for every
kernel but the undilated 3x3, whose torch kernel is fast.

A dilated stride-2 convolution is slower still (12.8 ms for the forward's backward of a dilated
3x3 at batch 64, 32 channels, 32x32: the reduction cells' ``dil_conv`` candidates). With
dilation 2, stride 2 and an even padding it reads only the even rows and columns of its input,
so it is the plain (undilated, stride-1, size-keeping) convolution of the input's even grid,
padding halved: :class:`DepthwiseConv2d` computes it so, on every device (the same sums).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from supernets.native.depthwise import depthwise_weight_grad


def keeps_size(kernel_size: int, stride: int, padding: int, dilation: int) -> bool:
    """Whether a convolution with these settings maps an ``H x W`` map to ``H x W``."""
    return stride == 1 and 2 * padding == dilation * (kernel_size - 1)


class _DepthwiseFunction(torch.autograd.Function):
    """A size-keeping depthwise convolution; its input gradient is the flipped-kernel convolution."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, padding: int,
                dilation: int, native: bool) -> torch.Tensor:
        # the input only for the weight gradient: with the weights constant (the architecture
        # step) it is not kept
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, weight)
        ctx.options = (padding, dilation, x.shape[1], native)
        return F.conv2d(x, weight, None, 1, padding, dilation, x.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        padding, dilation, channels, native = ctx.options
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight.flip((2, 3)), None, 1, padding, dilation, channels)
        if ctx.needs_input_grad[1]:
            kernel_size = weight.shape[-1]
            if native and (kernel_size, dilation) != (3, 1):
                grad_weight = depthwise_weight_grad(grad, x, kernel_size, 1, padding, dilation)
            if grad_weight is None:
                grad_weight = torch.ops.aten.convolution_backward(
                    grad, x, weight, None, [1, 1], [padding] * 2, [dilation] * 2, False, [0, 0],
                    channels, [False, True, False])[1]
        return grad_x, grad_weight, None, None, None


class DepthwiseConv2d(nn.Conv2d):
    """``nn.Conv2d(channels, channels, kernel_size, groups=channels, bias=False)`` (square
    kernel, one stride, padding and dilation), computed as above where it applies. Its
    parameters and state dict are ``nn.Conv2d``'s. ``even_grid`` (dilation 2, stride 2, even
    padding) and ``flipped_backward`` (the flipped-kernel input gradient, with the C kernel's
    weight gradient when ``native``) tell which applies; :meth:`use_fast_paths`
    switches them off, to run torch's convolution as it is."""

    native = True

    def __init__(self, channels: int, kernel_size: int, stride: int, padding: int,
                 dilation: int = 1) -> None:
        super().__init__(channels, channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=channels, bias=False)
        self.use_fast_paths(True)

    def use_fast_paths(self, enabled: bool) -> None:
        """Compute as above where it applies (``True``), or as ``nn.Conv2d`` does."""
        stride, padding, dilation = self.stride[0], self.padding[0], self.dilation[0]
        self.even_grid = enabled and stride == 2 and dilation == 2 and padding % 2 == 0
        self.flipped_backward = enabled and keeps_size(self.kernel_size[0],
                                                       *self._settings(self.even_grid))

    def _settings(self, even_grid: bool) -> tuple[int, int, int]:
        """(stride, padding, dilation) of the convolution actually run."""
        if even_grid:
            return 1, self.padding[0] // 2, 1
        return self.stride[0], self.padding[0], self.dilation[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.even_grid:
            x = x[:, :, ::2, ::2]
        stride, padding, dilation = self._settings(self.even_grid)
        if (self.flipped_backward and x.device.type == "cpu" and torch.is_grad_enabled()
                and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()):
            return _DepthwiseFunction.apply(x, self.weight, padding, dilation, self.native)
        return F.conv2d(x, self.weight, None, stride, padding, dilation, self.groups)


def use_depthwise_fast_paths(module: nn.Module, enabled: bool) -> None:
    """:meth:`DepthwiseConv2d.use_fast_paths` on every depthwise convolution of ``module``."""
    for child in module.modules():
        if isinstance(child, DepthwiseConv2d):
            child.use_fast_paths(enabled)
