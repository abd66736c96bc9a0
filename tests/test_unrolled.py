"""Second-order DARTS: the unrolled hypergradient against finite differences, no model copies.

The check is in float64 on a tiny supernet. With ReLU and max-pool the unrolled loss
``alpha -> L_val(w'(alpha), alpha)`` is only piecewise smooth (``w'`` holds ``grad_w L_train``,
whose ReLU masks jump with alpha), and finite differences across a kink are meaningless. The
test therefore swaps every ReLU for SiLU and leaves max-pool out of the candidates: the
hypergradient formula is the same for any activation, and the function is then smooth.
"""

from __future__ import annotations

import copy
from typing import Sequence

import pytest
import torch
from torch import nn
from torch.func import functional_call

from oneshot.search.algorithms.unrolled import VirtualStep, unrolled_arch_gradients
from oneshot.search.architecture import ArchitectureParameters
from supernets.darts.search import DartsSupernet

SMOOTH_CANDIDATES = ("none", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")
STEP = VirtualStep(lr=0.5, momentum=0.9, weight_decay=3e-4)  # a large lr: second order matters


def _smooth(model: nn.Module) -> nn.Module:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, nn.SiLU())
    return model


@pytest.fixture(scope="module")
def problem() -> dict:
    torch.manual_seed(0)
    model = _smooth(DartsSupernet(channels=2, layers=3, num_classes=3,
                                  candidates=SMOOTH_CANDIDATES)).double().train()
    arch = ArchitectureParameters(model.choice_points(), init_std=1.0).double()
    batch_w = (torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 3, (4,)))
    batch_a = (torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 3, (4,)))
    momentum = {name: 0.1 * torch.randn_like(p) for name, p in model.named_parameters()}
    return {"model": model, "arch": arch, "batch_w": batch_w, "batch_a": batch_a,
            "momentum": momentum, "criterion": nn.CrossEntropyLoss()}


def _unrolled_loss(problem: dict, alphas: Sequence[torch.Tensor]) -> float:
    """L_val(w', alpha) with w' = w - lr * (momentum * m + grad_w L_train(w, alpha) + wd * w)."""
    model, criterion, momentum = problem["model"], problem["criterion"], problem["momentum"]
    arch = {label: torch.softmax(a, -1) for label, a in zip(problem["arch"].candidates, alphas)}
    weights = {name: p.detach().clone().requires_grad_() for name, p in model.named_parameters()}
    x_w, y_w = problem["batch_w"]
    grads = torch.autograd.grad(criterion(functional_call(model, weights, (x_w, arch)), y_w),
                                list(weights.values()))
    with torch.no_grad():
        unrolled = {name: w - STEP.lr * (STEP.momentum * momentum[name] + g + STEP.weight_decay * w)
                    for (name, w), g in zip(weights.items(), grads)}
        x_a, y_a = problem["batch_a"]
        return criterion(functional_call(model, unrolled, (x_a, arch)), y_a).item()


def _hypergradient(problem: dict) -> list[torch.Tensor]:
    arch = problem["arch"]
    return unrolled_arch_gradients(problem["model"], arch.softmax, arch.parameters_list(),
                                   problem["batch_w"], problem["batch_a"], problem["criterion"],
                                   STEP, problem["momentum"]).alphas


def _directional_fd(problem: dict, direction: Sequence[torch.Tensor], h: float = 1e-5) -> float:
    base = [a.detach().clone() for a in problem["arch"].parameters_list()]
    plus = _unrolled_loss(problem, [a + h * d for a, d in zip(base, direction)])
    minus = _unrolled_loss(problem, [a - h * d for a, d in zip(base, direction)])
    return (plus - minus) / (2 * h)


def test_hypergradient_matches_finite_differences(problem: dict) -> None:
    grads = _hypergradient(problem)
    generator = torch.Generator().manual_seed(1)
    direction = [torch.randn(g.shape, generator=generator, dtype=torch.float64) for g in grads]
    analytic = sum((g * d).sum() for g, d in zip(grads, direction)).item()
    numeric = _directional_fd(problem, direction)
    assert analytic == pytest.approx(numeric, rel=1e-2)

    # The first-order gradient (w' = w) is far off here, so the check tells the two apart.
    arch, (x_a, y_a) = problem["arch"], problem["batch_a"]
    first = torch.autograd.grad(problem["criterion"](problem["model"](x_a, arch.softmax()), y_a),
                                arch.parameters_list())
    first_order = sum((g * d).sum() for g, d in zip(first, direction)).item()
    assert abs(first_order - numeric) > 0.2 * abs(numeric)


def test_the_reported_loss_is_the_unrolled_validation_loss(problem: dict) -> None:
    arch = problem["arch"]
    result = unrolled_arch_gradients(problem["model"], arch.softmax, arch.parameters_list(),
                                     problem["batch_w"], problem["batch_a"], problem["criterion"],
                                     STEP, problem["momentum"])
    assert not result.loss.requires_grad
    assert result.loss.item() == pytest.approx(
        _unrolled_loss(problem, [a.detach() for a in arch.parameters_list()]), rel=1e-10)


def test_hypergradient_coordinates_match_finite_differences(problem: dict) -> None:
    grads = _hypergradient(problem)
    flat = torch.cat([g.flatten() for g in grads])
    scale = flat.abs().max().item()
    for index in flat.abs().topk(3).indices.tolist() + [0]:
        direction = torch.zeros_like(flat)
        direction[index] = 1.0
        pieces = list(direction.split([g.numel() for g in grads]))
        numeric = _directional_fd(problem, [p.view_as(g) for p, g in zip(pieces, grads)])
        assert flat[index].item() == pytest.approx(numeric, rel=1e-2, abs=1e-3 * scale)


def test_momentum_buffers_enter_the_virtual_step(problem: dict) -> None:
    arch = problem["arch"]
    grads = unrolled_arch_gradients(problem["model"], arch.softmax, arch.parameters_list(),
                                    problem["batch_w"], problem["batch_a"], problem["criterion"],
                                    STEP, {}).alphas
    zeros = {name: torch.zeros_like(p) for name, p in problem["model"].named_parameters()}
    generator = torch.Generator().manual_seed(2)
    direction = [torch.randn(g.shape, generator=generator, dtype=torch.float64) for g in grads]
    analytic = sum((g * d).sum() for g, d in zip(grads, direction)).item()
    numeric = _directional_fd(dict(problem, momentum=zeros), direction)
    assert analytic == pytest.approx(numeric, rel=1e-2)
    with_momentum = sum((g * d).sum() for g, d in zip(_hypergradient(problem), direction)).item()
    assert with_momentum != pytest.approx(analytic, rel=1e-2)


def test_no_model_copy_and_no_side_effects(problem: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_copies(*args, **kwargs):
        raise AssertionError("unrolled_arch_gradients deep-copied something")

    monkeypatch.setattr(copy, "deepcopy", no_copies)
    model, arch = problem["model"], problem["arch"]
    weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    alphas = [a.detach().clone() for a in arch.parameters_list()]
    grads = _hypergradient(problem)
    assert [g.shape for g in grads] == [a.shape for a in alphas]
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(torch.equal(p, weights[name]) for name, p in model.named_parameters())
    assert all(torch.equal(a, b) for a, b in zip(arch.parameters_list(), alphas))
    assert all(p.grad is None for p in [*model.parameters(), *arch.parameters()])
