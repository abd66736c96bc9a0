"""benchmarks/peer_darts.py times the original DARTS code's step maths: check they are the maths.

Its second-order architecture gradient (an unrolled model copy, a finite-difference
Hessian-vector product) must equal ours (oneshot.search.algorithms.unrolled), computed
functionally, on the same weights, alphas and batches.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import torch

from oneshot.search.algorithms.unrolled import VirtualStep, unrolled_arch_gradients
from supernets.batchnorm import BatchNorm2d
from supernets.darts.search import DartsSupernet
from supernets.depthwise import DepthwiseConv2d
from supernets.mixed import MixedOp
from supernets.ops import Zero

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from peer_darts import OriginalDarts  # noqa: E402


def test_original_second_order_gradient_is_ours() -> None:
    torch.manual_seed(0)
    model = DartsSupernet(channels=2, layers=3, num_classes=3).double().train()
    original = OriginalDarts(model, unrolled=True)
    original.alphas = {k: a.detach().double().requires_grad_() for k, a in original.alphas.items()}
    train = (torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 3, (4,)))
    valid = (torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 3, (4,)))
    alphas = list(original.alphas.values())
    ours = unrolled_arch_gradients(
        model, lambda: {k: torch.softmax(a, -1) for k, a in original.alphas.items()}, alphas,
        train, valid, torch.nn.CrossEntropyLoss(),
        VirtualStep(lr=original.lr, momentum=original.momentum,
                    weight_decay=original.weight_decay), {})
    original._unrolled_backward(train, valid)
    for mine, theirs in zip(ours.alphas, alphas):
        torch.testing.assert_close(theirs.grad, mine, rtol=1e-5, atol=1e-8)
    assert any(a.grad.abs().sum() > 0 for a in alphas)
    pools = [type(m) for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert pools and set(pools) == {torch.nn.MaxPool2d}  # the original's pools keep their indices
    depthwise = [m for m in model.modules() if isinstance(m, DepthwiseConv2d)]
    assert depthwise and not any(m.flipped_backward or m.even_grid for m in depthwise)  # torch's
    norms = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
    assert norms and not any(m.wide_view for m in norms)  # torch's kernels throughout
    natives = [m for m in model.modules() if hasattr(type(m), "native")]
    assert natives and not any(m.native for m in natives)  # and none of our C kernels


def test_original_edges_compute_none_and_mix_as_ours() -> None:
    torch.manual_seed(0)
    model = DartsSupernet(channels=2, layers=3, num_classes=3).train()
    x = torch.randn(2, 3, 8, 8)
    arch = {label: torch.softmax(torch.randn(len(names)), -1)
            for label, names in model.choice_points().items()}
    ours = model(x, arch)
    original = OriginalDarts(model, unrolled=False)
    zeros_computed = []
    for module in model.modules():
        if isinstance(module, Zero):
            module.register_forward_hook(lambda *args: zeros_computed.append(1))
    theirs = model(x, arch)
    edges = [m for m in model.modules() if isinstance(m, MixedOp)]
    assert len(zeros_computed) == len(edges) == 3 * 14  # every edge's none, as the original
    torch.testing.assert_close(theirs, ours)
    unrolled_copy = copy.deepcopy(original.model)  # the second-order step's model copy mixes so too
    assert all(edge.forward.__self__ is edge for edge in unrolled_copy.modules()
               if isinstance(edge, MixedOp))
