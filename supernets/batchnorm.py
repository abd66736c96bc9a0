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


def _statistics(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel batch mean and biased variance of ``x`` (through its view when ``k > 1``)."""
    if k == 1:
        return torch.batch_norm_update_stats(x, None, None, 0.0)
    view_mean, view_var = torch.batch_norm_update_stats(_pixels_as_channels(x, k), None, None, 0.0)
    mean = _fold(view_mean, k) / k
    return mean, _fold(view_var + (view_mean - mean.repeat(k)) ** 2, k) / k


def batch_norm_backward(grad: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                        scale: torch.Tensor, eps: float,
                        k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The backward of ``scale * (x - mean) / sqrt(var + eps)`` with the batch statistics
    ``mean`` and ``var`` of ``x``: the input gradient and the per-channel sums of ``grad * xhat``
    and of ``grad`` (the gradients of a BatchNorm's weight and bias). ``k > 1``: computed through
    the wide view of channels-last ``x`` (:func:`view_factor`)."""
    if k == 1:
        return torch.ops.aten.native_batch_norm_backward(
            grad, x, scale, None, None, mean, torch.rsqrt(var + eps), True, eps, [True, True, True])
    c = x.shape[1]
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
    return _channels_back(grad_x, c), sum_g_xhat, sum_g


class _ViewBatchNorm(torch.autograd.Function):
    """Training-mode batch normalisation of channels-last ``x`` through its wide view, given the
    batch statistics of ``x`` (:meth:`BatchNorm2d.batch_statistics`)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                mean: torch.Tensor, var: torch.Tensor, eps: float, k: int) -> torch.Tensor:
        c = x.shape[1]
        repeat = (lambda t: None if t is None else t.repeat(k))
        out = F.batch_norm(_pixels_as_channels(x, k), mean.repeat(k), var.repeat(k),
                           repeat(weight), repeat(bias), False, 0.0, eps)
        ctx.save_for_backward(x, mean, var, weight)
        ctx.options = (eps, k, bias is not None)
        return _channels_back(out, c)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, mean, var, weight = ctx.saved_tensors
        eps, k, has_bias = ctx.options
        scale = torch.ones_like(mean) if weight is None else weight
        grad_x, sum_g_xhat, sum_g = batch_norm_backward(grad, x, mean, var, scale, eps, k)
        grad_weight = sum_g_xhat if weight is not None and ctx.needs_input_grad[1] else None
        grad_bias = sum_g if has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias, None, None, None, None


class FoldSlot:
    """Where the trailing BatchNorms of an edge's candidates defer their normalisation to the
    edge's weighted sum (:mod:`supernets.folded_norm`): ``open`` while the edge runs a candidate
    that may defer, ``norm`` the BatchNorm that did."""

    __slots__ = ("open", "norm")

    def __init__(self) -> None:
        self.open = False
        self.norm: BatchNorm2d | None = None


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and state dict) that normalises channels-last
    CPU maps of fewer than 16 channels through the wide view above when it uses batch
    statistics; with ``wide_view = False`` (:func:`use_batchnorm_wide_view`) it is
    ``nn.BatchNorm2d`` throughout.

    Given a ``fold_slot`` (the last module of an edge's candidate), it returns its input as it
    is while the slot is open and it is :meth:`foldable`, and puts itself in the slot: the edge
    normalises in its weighted sum instead.
    """

    wide_view = True
    fold_slot: FoldSlot | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slot = self.fold_slot
        if slot is not None and slot.open and self.foldable(x):
            slot.norm = self
            return x
        k = self.view_factor(x)
        if k == 1:
            return super().forward(x)
        mean, var = self.batch_statistics(x, k)
        return _ViewBatchNorm.apply(x, self.weight, self.bias, mean, var, self.eps, k)

    @property
    def uses_batch_statistics(self) -> bool:
        """Whether the forward normalises by the batch's statistics (not the running ones)."""
        return self.training or not self.track_running_stats

    def foldable(self, x: torch.Tensor) -> bool:
        """Whether a weighted sum may fold this normalisation of ``x`` in: no affine
        parameters, batch statistics, a float32 or float64 4-D map, outside autocast and
        ``torch.compile``."""
        return (not self.affine and self.uses_batch_statistics and x.dim() == 4
                and x.dtype in (torch.float32, torch.float64)
                and not torch.is_autocast_enabled(x.device.type)
                and not torch.compiler.is_compiling())

    def batch_statistics(self, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-channel batch mean and biased variance of ``x`` (through its wide view when
        ``k > 1``), as constants; in training with running statistics it counts the batch and
        updates them, as ``nn.BatchNorm2d`` does."""
        with torch.no_grad():
            mean, var = _statistics(x, k)
            if self.training and self.track_running_stats and self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                            else self.momentum)
                count = x.numel() // x.shape[1]
                self.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(var * (count / max(count - 1, 1)),
                                                         alpha=momentum)
        return mean, var

    def view_factor(self, x: torch.Tensor) -> int:
        """``k`` of the wide view of ``x`` when it applies (batch statistics of a channels-last
        CPU map of fewer than 16 channels, wide view on), else 1."""
        if (not self.wide_view or not self.uses_batch_statistics or x.dim() != 4
                or x.device.type != "cpu" or x.shape[1] >= LANES
                or x.dtype not in (torch.float32, torch.float64)
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
