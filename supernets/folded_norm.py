"""An edge's weighted sum with its candidates' trailing BatchNorms folded in.

Every DARTS candidate but ``skip_connect`` ends in a BatchNorm without affine parameters, so an
edge computes ``sum_i w_i * (y_i - mean_i) * invstd_i`` (plus ``w_j * y_j`` for the others), where
``y_i`` is candidate ``i`` before its BatchNorm and ``mean_i``, ``invstd_i`` its batch
statistics. Run as written, each term is a pass for the statistics, one that writes the
normalised map, and one that adds it to the sum; the backward multiplies the output gradient by
``w_i`` before the BatchNorm's backward sees it. :func:`folded_weighted_sum` computes the same
sum as one per-channel multiply-add of ``y_i`` per term, with every shift gathered into the
first:

- forward: ``out = shift + sum_i y_i * (w_i * invstd_i)`` with ``shift = -sum_i w_i * invstd_i
  * mean_i`` per channel (the BatchNorm's running statistics are updated as its own forward
  does);
- backward: the BatchNorm's own backward with ``w_i`` as its weight gives the gradient of
  ``y_i``, and the sums it makes for a weight gradient give ``w_i``'s: ``sum(g * xhat_i)``.

No normalised map is written, and none is kept for the architecture gradient. The candidate
still runs as a whole module (its hooks fire): its last BatchNorm, given the edge's
:class:`~supernets.batchnorm.FoldSlot` by :func:`attach_fold_slot`, returns its input as it is
and names itself in the slot, and the edge folds it. The same sums run
in another order, so values agree to rounding (tests check float64). Only
:class:`~supernets.batchnorm.BatchNorm2d` without affine parameters that normalises by batch
statistics is folded, in float32 or float64 and outside autocast and ``torch.compile``; anything
else runs as written.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from supernets.batchnorm import BatchNorm2d, FoldSlot, batch_norm_backward
from supernets.memory_format import memory_format_of


def attach_fold_slot(op: nn.Module, slot: FoldSlot) -> bool:
    """Give ``op``'s last module, when it is a :class:`BatchNorm2d` without affine parameters
    (``op`` an ``nn.Sequential``, nested ones included), the edge's ``slot``; whether it was."""
    if isinstance(op, BatchNorm2d) and not op.affine:
        op.fold_slot = slot
        return True
    if isinstance(op, nn.Sequential) and len(op):
        return attach_fold_slot(op[-1], slot)
    return False


class Term(NamedTuple):
    """One candidate's part of a weighted sum: its index in the weight row, its output (before
    ``norm`` when ``norm`` is given, to be folded) and ``norm``."""

    index: int
    output: torch.Tensor
    norm: BatchNorm2d | None


def folded_weighted_sum(weights: torch.Tensor, terms: Sequence[Term]) -> torch.Tensor:
    """``sum_t weights[t.index] * t.norm(t.output)`` (``t.output`` itself where ``t.norm`` is
    None), with every given norm folded in; at least one term has a norm."""
    if all(term.norm is None for term in terms):
        raise ValueError("folded_weighted_sum needs at least one term with a norm to fold")
    statistics: list[torch.Tensor] = []
    options: list[tuple[float, int] | None] = []
    for term in terms:
        if term.norm is None:
            options.append(None)
            continue
        k = term.norm.view_factor(term.output)
        statistics.extend(term.norm.batch_statistics(term.output, k))
        options.append((term.norm.eps, k))
    return _FoldedSum.apply(weights, tuple(t.index for t in terms), tuple(options), len(terms),
                            *(t.output for t in terms), *statistics)


def _channel_view(row: torch.Tensor) -> torch.Tensor:
    return row.view(1, -1, 1, 1)


class _FoldedSum(torch.autograd.Function):
    """The weighted sum of :func:`folded_weighted_sum`, given the terms' batch statistics."""

    @staticmethod
    def forward(ctx: Any, weights: torch.Tensor, indices: tuple[int, ...],
                options: tuple[tuple[float, int] | None, ...], count: int,
                *tensors: torch.Tensor) -> torch.Tensor:
        outputs, flat = tensors[:count], list(tensors[count:])
        scales: list[torch.Tensor] = []
        shift: torch.Tensor | None = None
        for index, output, option in zip(indices, outputs, options):
            weight = weights[index]
            if option is None:
                scales.append(weight)
                continue
            mean, var = flat.pop(0), flat.pop(0)
            scale = weight * torch.rsqrt(var + option[0])
            shift = -scale * mean if shift is None else shift - scale * mean
            scales.append(_channel_view(scale))
        first = next(t for t, option in enumerate(options) if option is not None)
        out = torch.addcmul(_channel_view(shift), outputs[first], scales[first])  # type: ignore[arg-type]
        for t, (output, scale) in enumerate(zip(outputs, scales)):
            if t != first:
                out.addcmul_(output, scale)
        ctx.save_for_backward(weights, *tensors)
        ctx.indices, ctx.options = indices, options
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weights, *tensors = ctx.saved_tensors
        outputs, statistics = tensors[:len(ctx.indices)], tensors[len(ctx.indices):]
        grad = grad.contiguous(memory_format=memory_format_of(outputs[0]))  # not a channel slice
        grad_weights = torch.zeros_like(weights) if ctx.needs_input_grad[0] else None
        grads: list[torch.Tensor | None] = []
        for t, (index, output, option) in enumerate(zip(ctx.indices, outputs, ctx.options)):
            weight = weights[index]
            if option is None:
                grads.append(grad * weight if ctx.needs_input_grad[4 + t] else None)
                if grad_weights is not None:
                    grad_weights[index] += (grad * output).sum().to(weights.dtype)
                continue
            mean, var, statistics = statistics[0], statistics[1], statistics[2:]
            scale = weight.to(output.dtype).expand(output.shape[1]).contiguous()
            grad_output, sum_g_xhat, _ = batch_norm_backward(grad, output, mean, var, scale,
                                                             *option)
            grads.append(grad_output)
            if grad_weights is not None:
                grad_weights[index] += sum_g_xhat.sum().to(weights.dtype)
        constants = [None] * (len(ctx.needs_input_grad) - 4 - len(outputs))
        return (grad_weights, None, None, None, *grads, *constants)
