"""MixedOp: the edge output is the weighted sum of its candidates; SparseRow computes only some."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from supernets.mixed import MixedOp, SparseRow
from supernets.ops import DARTS_PRIMITIVES, create_op


def _mixed(stride: int) -> MixedOp:
    torch.manual_seed(0)
    return MixedOp(DARTS_PRIMITIVES, lambda name: create_op(name, 4, stride, affine=True))


def _count_calls(op: MixedOp) -> list[int]:
    counts = [0] * len(op.ops)
    for i, candidate in enumerate(op.ops):
        candidate.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


@pytest.mark.parametrize("stride", [1, 2])
def test_dense_row_is_weighted_sum_of_all_candidates(stride: int) -> None:
    op = _mixed(stride)
    x = torch.randn(2, 4, 8, 8)
    weights = torch.rand(len(DARTS_PRIMITIVES)) + 0.1  # 'none' has a non-zero weight too
    expected = sum(w * candidate(x) for w, candidate in zip(weights, op.ops))
    out = op(x, weights)
    assert out.shape == (2, 4, 8 // stride, 8 // stride)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_dense_row_never_computes_none_and_computes_others_once() -> None:
    op = _mixed(1)
    counts = _count_calls(op)
    op(torch.randn(2, 4, 8, 8), torch.softmax(torch.randn(len(DARTS_PRIMITIVES)), -1))
    assert counts == [0] + [1] * (len(DARTS_PRIMITIVES) - 1)


def test_dense_row_gradient_is_each_candidate_output() -> None:
    op = _mixed(1)
    x = torch.randn(2, 4, 8, 8)
    weights = torch.rand(len(DARTS_PRIMITIVES), requires_grad=True)
    (grad,) = torch.autograd.grad(op(x, weights).sum(), weights)
    expected = torch.stack([candidate(x).sum() for candidate in op.ops])
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_sparse_row_computes_only_active_candidates(stride: int) -> None:
    op = _mixed(stride)
    x = torch.randn(2, 4, 8, 8)
    active = (DARTS_PRIMITIVES.index("none"), DARTS_PRIMITIVES.index("avg_pool_3x3"),
              DARTS_PRIMITIVES.index("sep_conv_3x3"))
    weights = torch.zeros(len(DARTS_PRIMITIVES))
    weights[list(active)] = torch.tensor([0.2, 0.3, 0.5])
    weights.requires_grad_()
    counts = _count_calls(op)
    out = op(x, SparseRow(weights, active))
    assert counts == [1 if i in active[1:] else 0 for i in range(len(DARTS_PRIMITIVES))]
    (grad,) = torch.autograd.grad(out.sum(), weights)
    inactive = [i for i in range(len(DARTS_PRIMITIVES)) if i not in active]
    assert torch.count_nonzero(grad[inactive]) == 0
    with torch.no_grad():
        expected = sum(weights[i] * op.ops[i](x) for i in active)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_sparse_row_of_only_none_gives_zeros_of_output_shape(stride: int) -> None:
    op = _mixed(stride)
    out = op(torch.randn(2, 4, 8, 8), SparseRow(torch.ones(len(DARTS_PRIMITIVES)), (0,)))
    assert out.shape == (2, 4, 8 // stride, 8 // stride)
    assert torch.count_nonzero(out) == 0


def test_candidates_are_registered_submodules() -> None:
    op = _mixed(1)
    assert op.candidates == DARTS_PRIMITIVES
    assert isinstance(op.ops, nn.ModuleList) and len(op.ops) == len(DARTS_PRIMITIVES)
    assert sum(p.numel() for p in op.parameters()) > 0


@pytest.mark.parametrize("chosen", ["sep_conv_3x3", "none"])
def test_sparse_row_constants_give_the_inactive_weights_the_output_gradient_sum(chosen: str) -> None:
    op = _mixed(1)
    counts = _count_calls(op)
    x = torch.randn(2, 4, 8, 8)
    index = DARTS_PRIMITIVES.index(chosen)
    soft = torch.softmax(torch.randn(len(DARTS_PRIMITIVES)), -1).requires_grad_()
    hard = torch.zeros_like(soft)
    hard[index] = 1.0
    weights = hard - soft.detach() + soft  # GDAS's straight-through row
    upstream = torch.randn(2, 4, 8, 8)  # the loss's gradient with respect to the edge output
    out = op(x, SparseRow(weights, (index,), constants=True))
    torch.testing.assert_close(out, op(x, SparseRow(weights, (index,))), rtol=0, atol=0)
    (grad,) = torch.autograd.grad((out * upstream).sum(), soft)
    expected = torch.full((len(DARTS_PRIMITIVES),), upstream.sum().item())  # a constant's gradient
    expected[index] = (op.ops[index](x) * upstream).sum()  # the chosen candidate's output
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-5)
    assert counts[index] == sum(counts) == 3  # still only the chosen candidate runs (3 forwards)
