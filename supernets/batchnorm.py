"""BatchNorm2d that stays fast on the CPU for channels-last maps of few channels.

torch's CPU BatchNorm kernel for channels-last tensors vectorizes over the channels; below 16
channels it falls back to scalar code, several times slower per element (the first cells of the
small DARTS configuration have 8 channels; ``benchmarks/kernel_ab.py batchnorm`` times the step
with and without this class). A channels-last ``N x C x H x W`` map is, in memory, the
``N x kC x H x W/k`` map whose "channels" are ``k`` neighbouring pixels of the ``C`` channels,
so :class:`BatchNorm2d` runs torch's kernels on that view (``k`` the smallest power of two with
``kC >= 16`` that divides ``W``) and folds the ``k`` partial statistics of each channel into
its own:

- forward: the per-view-channel mean and variance (``batch_norm_update_stats``), folded, then
  the normalisation as an evaluation-mode BatchNorm with the folded statistics repeated;
- backward: an evaluation-mode BatchNorm backward gives ``g * invstd * weight`` and the
  per-view-channel sums of ``g`` and ``g * xhat``; folded, they give the two terms the batch
  statistics add, ``A + B * x`` per channel, computed as one more evaluation-mode BatchNorm.

The same maths as ``nn.BatchNorm2d`` (the running statistics too); sums run in another order, so
values agree to rounding. Anything else (evaluation with running statistics, NCHW, 16 channels
or more, other devices, autocast, ``torch.compile``) is ``nn.BatchNorm2d`` itself.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

LANES = 16  # channels below which torch's channels-last CPU kernel stops vectorizing


def view_factor(x: torch.Tensor) -> int:
    """``k`` for the ``N x kC x H x W/k`` view of ``x`` (a channels-last 4-D map), or 1."""
    k = 1
    while k * x.shape[1] < LANES and x.shape[3] % (2 * k) == 0:
        k *= 2
    return k


def _pixels_as_channels(x: torch.Tensor, k: int) -> torch.Tensor:
    """The ``N x kC x H x W/k`` channels-last view of channels-last ``x`` (no copy)."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h, w // k, k * c).permute(0, 3, 1, 2)


def _channels_back(v: torch.Tensor, c: int) -> torch.Tensor:
    """The inverse of :func:`_pixels_as_channels`."""
    n, kc, h, wk = v.shape
    return v.permute(0, 2, 3, 1).reshape(n, h, wk * kc // c, c).permute(0, 3, 1, 2)


def _fold(per_view: torch.Tensor, k: int) -> torch.Tensor:
    """Sum the ``k`` view channels of every channel: ``(kC,) -> (C,)``."""
    return per_view.view(k, -1).sum(0)


class _ViewBatchNorm(torch.autograd.Function):
    """Training-mode batch normalisation of channels-last ``x`` through its wide view."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
                momentum: float, eps: float, k: int) -> torch.Tensor:
        c = x.shape[1]
        view = _pixels_as_channels(x, k)
        view_mean, view_var = torch.batch_norm_update_stats(view, None, None, 0.0)
        mean = _fold(view_mean, k) / k
        var = _fold(view_var + (view_mean - mean.repeat(k)) ** 2, k) / k
        if running_mean is not None and running_var is not None:
            count = x.numel() // c
            running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
            running_var.mul_(1 - momentum).add_(var * (count / max(count - 1, 1)), alpha=momentum)
        repeat = (lambda t: None if t is None else t.repeat(k))
        out = F.batch_norm(view, mean.repeat(k), var.repeat(k), repeat(weight), repeat(bias),
                           False, 0.0, eps)
        ctx.save_for_backward(x, mean, var, weight)
        ctx.options = (eps, k, bias is not None)
        return _channels_back(out, c)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, mean, var, weight = ctx.saved_tensors
        eps, k, has_bias = ctx.options
        c = x.shape[1]
        scale = torch.ones_like(mean) if weight is None else weight
        view = _pixels_as_channels(x, k)
        grad_view = _pixels_as_channels(grad.contiguous(memory_format=torch.channels_last), k)
        grad_x, sum_g_xhat, sum_g = torch.ops.aten.native_batch_norm_backward(
            grad_view, view, scale.repeat(k), mean.repeat(k), var.repeat(k), None, None, False,
            eps, [True, True, True])
        sum_g_xhat, sum_g = _fold(sum_g_xhat, k), _fold(sum_g, k)
        count = x.numel() // c
        invstd = torch.rsqrt(var + eps)
        # the batch statistics' terms: -scale * invstd * (mean(g) + xhat * mean(g * xhat))
        slope = -scale * invstd * invstd * sum_g_xhat / count
        offset = -scale * invstd * sum_g / count - slope * mean
        # A + B * x in one pass: an evaluation-mode BatchNorm with mean 0, variance 1, eps 0
        grad_x += F.batch_norm(view, mean.new_zeros(k * c), mean.new_ones(k * c), slope.repeat(k),
                               offset.repeat(k), False, 0.0, 0.0)
        grad_weight = sum_g_xhat if weight is not None and ctx.needs_input_grad[1] else None
        grad_bias = sum_g if has_bias and ctx.needs_input_grad[2] else None
        return _channels_back(grad_x, c), grad_weight, grad_bias, None, None, None, None, None


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and state dict) that normalises channels-last
    CPU maps of fewer than 16 channels through the wide view above when it uses batch
    statistics; with ``wide_view = False`` (:func:`use_batchnorm_wide_view`) it is
    ``nn.BatchNorm2d`` throughout."""

    wide_view = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self._view_factor(x)
        if k == 1:
            return super().forward(x)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        track = self.training and self.track_running_stats
        return _ViewBatchNorm.apply(x, self.weight, self.bias,
                                    self.running_mean if track else None,
                                    self.running_var if track else None, momentum, self.eps, k)

    def _view_factor(self, x: torch.Tensor) -> int:
        """``k`` when the wide view applies, else 1."""
        uses_batch_statistics = self.training or not self.track_running_stats
        if (not self.wide_view or not uses_batch_statistics or x.dim() != 4 or x.device.type != "cpu"
                or x.shape[1] >= LANES or x.dtype not in (torch.float32, torch.float64)
                or not x.is_contiguous(memory_format=torch.channels_last)
                or torch.is_autocast_enabled("cpu")
                or torch.compiler.is_compiling()):
            return 1
        return view_factor(x)


def use_batchnorm_wide_view(module: nn.Module, enabled: bool) -> None:
    """Switch the wide view of every :class:`BatchNorm2d` in ``module`` on or off."""
    for child in module.modules():
        if isinstance(child, BatchNorm2d):
            child.wide_view = enabled
