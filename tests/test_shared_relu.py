"""Candidates of an edge that start with a ReLU share one relu(x): same outputs and gradients."""

from __future__ import annotations

import copy

import torch
from torch import nn

from supernets.choices import OpChoice
from supernets.mixed import MixedOp, SharedReLU, SparseRow, set_relu_sharing
from supernets.ops import DARTS_PRIMITIVES, create_op

RELU_FIRST = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")


def _edge(stride: int = 1) -> MixedOp:
    torch.manual_seed(0)
    return MixedOp(DARTS_PRIMITIVES, lambda name: create_op(name, 4, stride, False)).double()


def _independent(edge: MixedOp, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i * op_i(x)`` with every candidate called on its own (nothing shared)."""
    return sum(w * op(x) for w, op, name in zip(weights, edge.ops, edge.candidates)
               if name != "none")


def test_only_the_relu_first_candidates_share() -> None:
    edge = _edge()
    shared = {name for name, op in zip(edge.candidates, edge.ops)
              if any(isinstance(m, SharedReLU) for m in op.modules())}
    assert shared == set(RELU_FIRST)
    first_convolutions = [next(m for m in op.modules() if isinstance(m, nn.Conv2d))
                          for name, op in zip(edge.candidates, edge.ops) if name in RELU_FIRST]
    seen: list[torch.Tensor] = []
    hooks = [conv.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
             for conv in first_convolutions]
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    weights = torch.full((len(DARTS_PRIMITIVES),), 0.125, dtype=torch.float64)
    out = edge(x, weights)
    assert len(seen) == 4 and all(t is seen[0] for t in seen)
    torch.testing.assert_close(seen[0], torch.relu(x))
    assert edge._relu_shared.input is None and edge._relu_shared.output is None
    seen.clear()
    set_relu_sharing(edge, False)  # each candidate computes its own, to the same result
    torch.testing.assert_close(edge(x, weights), out)
    assert len(seen) == 4 and len({id(t) for t in seen}) == 4
    for hook in hooks:
        hook.remove()


def test_outputs_and_gradients_equal_the_candidates_run_alone() -> None:
    for stride in (1, 2):
        edge = _edge(stride)
        alone = copy.deepcopy(edge)
        x = torch.randn(2, 4, 8, 8, dtype=torch.float64, requires_grad=True)
        weights = torch.softmax(torch.randn(len(DARTS_PRIMITIVES), dtype=torch.float64), -1)
        weights.requires_grad_()
        results = []
        for model, run in ((edge, lambda: edge(x, weights)),
                           (alone, lambda: _independent(alone, x, weights))):
            out = run()
            grads = torch.autograd.grad((out * out).sum(), [x, weights, *model.parameters()])
            results.append((out, grads))
        torch.testing.assert_close(results[0][0], results[1][0])
        torch.testing.assert_close(results[0][1], results[1][1])


def test_a_frozen_candidate_leaves_the_others_their_gradient() -> None:
    edge = _edge()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    active = tuple(DARTS_PRIMITIVES.index(name) for name in RELU_FIRST[:3])
    weights = torch.zeros(len(DARTS_PRIMITIVES), dtype=torch.float64)
    weights[list(active)] = 1.0
    out = edge(x, SparseRow(weights, active, frozen=(active[0],)))
    (grad,) = torch.autograd.grad(out.sum(), x)
    expected = sum(edge.ops[i](x) for i in active[1:])
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(grad, expected_grad)


def test_a_single_relu_first_candidate_and_a_swapped_relu_run_as_written() -> None:
    choice = OpChoice("e", ["skip_connect", "dil_conv_3x3"], channels=3)
    x = torch.randn(1, 3, 5, 5)
    torch.testing.assert_close(choice(x, torch.tensor([0.0, 1.0])), choice.ops[1](x))
    edge = _edge()
    for op in edge.ops:  # what a user swapping activations does: the swap is what runs
        for parent in list(op.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.ReLU):
                    setattr(parent, name, nn.SiLU())
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    weights = torch.full((len(DARTS_PRIMITIVES),), 0.125, dtype=torch.float64)
    torch.testing.assert_close(edge(x, weights), _independent(edge, x, weights))
    assert not any(isinstance(m, nn.ReLU) for m in edge.modules())
