"""algorithm=drnas: Dirichlet samples with pathwise gradients, the KL term, progressive pruning,
and searches on both spaces that resume exactly and retrain."""

from __future__ import annotations

import math
import shutil

import pytest
import pytorch_lightning as pl
import torch

import oneshot.train as train_module
from conftest import compose_search
from oneshot.errors import ConfigError
from oneshot.search.algorithms import create_algorithm
from oneshot.search.algorithms.drnas import (concentration, dirichlet_kl, dirichlet_rsample,
                                             top_candidates)
from oneshot.storage.checkpointing import load_checkpoint_file
from oneshot.train import train
from supernets.darts.genotype import edge_label
from supernets.genotype_file import load_genotype_file
from supernets.mixed import SparseRow
from supernets.spaces import get_space


def test_concentration_is_elu_plus_one() -> None:
    alpha = torch.tensor([-2.0, 0.0, 1.5])
    torch.testing.assert_close(concentration(alpha), torch.tensor([math.exp(-2.0), 1.0, 2.5]))


def test_samples_come_from_the_seed_and_leave_the_global_state_alone() -> None:
    rows = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 0.5])]
    state = torch.random.get_rng_state()
    first, again = dirichlet_rsample(rows, 7), dirichlet_rsample(rows, 7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(dirichlet_rsample(rows, 8)[0], first[0])
    assert all(sample.sum().item() == pytest.approx(1.0) and (sample > 0).all() for sample in first)


def _incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by the trapezoidal rule (float64)."""
    t = torch.linspace(0.0, x, 200_001, dtype=torch.float64)
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    density = torch.exp((a - 1) * torch.log(t.clamp_min(1e-300)) + (b - 1) * torch.log1p(-t) - log_beta)
    return torch.trapezoid(density, t).item()


@pytest.mark.parametrize("seed", [0, 1])
def test_sample_gradient_is_the_implicit_reparameterization(seed: int) -> None:
    # Dirichlet(a, b) is Beta(a, b) in its first coordinate x = F^-1(u; a, b); holding u fixed,
    # dx/da = -(dF/da) / f(x): compare autograd with F's finite differences at the drawn x
    a, b = 2.0, 3.5
    c = torch.tensor([a, b], dtype=torch.float64, requires_grad=True)
    x = dirichlet_rsample([c], seed)[0][0]
    grad = torch.autograd.grad(x, c)[0]
    x0, h = x.item(), 1e-4
    density = math.exp((a - 1) * math.log(x0) + (b - 1) * math.log1p(-x0)
                       - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)))
    d_a = (_incomplete_beta(x0, a + h, b) - _incomplete_beta(x0, a - h, b)) / (2 * h)
    d_b = (_incomplete_beta(x0, a, b + h) - _incomplete_beta(x0, a, b - h)) / (2 * h)
    torch.testing.assert_close(grad, torch.tensor([-d_a / density, -d_b / density], dtype=torch.float64),
                               rtol=2e-3, atol=0)


def test_sample_gradient_is_unbiased_for_the_mean() -> None:
    # E[x_0] = c_0 / sum(c): the average pathwise gradient of many samples is its gradient
    c = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    draws = dirichlet_rsample([c.expand(200_000, 3)], 3)[0]
    estimate = torch.autograd.grad(draws[:, 0].mean(), c)[0]
    exact = torch.autograd.grad(c[0] / c.sum(), c)[0]
    torch.testing.assert_close(estimate, exact, rtol=0.03, atol=0)


def _kl_formula(c: list[float], prior: float) -> float:
    """KL(Dir(c) || Dir(prior, ...)) in closed form."""
    c0, p0 = sum(c), prior * len(c)
    digamma = lambda v: torch.special.digamma(torch.tensor(v, dtype=torch.float64)).item()
    return (math.lgamma(c0) - sum(math.lgamma(v) for v in c) - math.lgamma(p0)
            + len(c) * math.lgamma(prior) + sum((v - prior) * (digamma(v) - digamma(c0)) for v in c))


def test_kl_term_is_the_sum_of_the_rows_closed_forms() -> None:
    rows = [[0.5, 2.0, 3.0], [1.5, 0.7]]
    kl = dirichlet_kl([torch.tensor(r, dtype=torch.float64) for r in rows], 1.0)
    assert kl.item() == pytest.approx(sum(_kl_formula(r, 1.0) for r in rows), rel=1e-10)
    assert dirichlet_kl([torch.ones(4, dtype=torch.float64)], 1.0).item() == pytest.approx(0.0, abs=1e-12)


def test_top_candidates_keeps_the_largest_of_the_kept() -> None:
    alpha = torch.tensor([0.3, 0.9, -1.0, 0.9, 0.5])
    kept = torch.tensor([True, True, True, False, True])
    assert top_candidates(alpha, kept, 2).tolist() == [False, True, False, False, True]
    assert top_candidates(torch.zeros(3), torch.ones(3, dtype=torch.bool), 2).tolist() == [True, True, False]


def _drnas(**cfg):
    supernet = get_space("darts").supernet(num_classes=2, channels=4, layers=3)
    return create_algorithm("drnas", supernet, num_classes=2, cfg=cfg)


def test_stages_and_warmup_follow_the_reference_schedule() -> None:
    module = _drnas()  # progressive: auto is on for the DARTS space
    assert module.stages == 2
    trains = [module.trains_architecture(epoch, 50) for epoch in range(50)]
    # two stages of 25 epochs; the alphas train from epoch 10 of each (warmup 0.4)
    assert trains == [False] * 10 + [True] * 15 + [False] * 10 + [True] * 15
    assert _drnas(progressive=False).trains_architecture(0, 50)


def test_pruning_keeps_the_top_candidates_and_the_mean_and_genotype_use_only_them() -> None:
    module = _drnas(keep=3)
    with torch.no_grad():
        for i, alpha in enumerate(module.arch.parameters_list()):
            alpha.copy_(torch.randn(alpha.shape, generator=torch.Generator().manual_seed(i)))
    alphas = {label: a.detach().clone() for label, a in module.arch.alphas.items()}
    module.prune()
    for label, alpha in alphas.items():
        kept = module.pruning.kept(label)
        assert set(kept.nonzero().flatten().tolist()) == set(alpha.topk(3).indices.tolist())
        row = module.eval_architecture()[label]
        assert isinstance(row, SparseRow) and row.active == module.pruning.active(label)
        c = concentration(alpha)[kept]
        torch.testing.assert_close(row.weights[kept], c / c.sum())
        assert not row.weights[~kept].any() and not module.arch_weights()[label][~kept].any()
    _assert_genotype_in_kept(module.genotype(), {label: module.pruning.kept(label) for label in alphas})


def _assert_genotype_in_kept(genotype, kept: dict[str, torch.Tensor]) -> None:
    candidates = get_space("darts").supernet(channels=4, layers=3).candidates
    for cell in ("normal", "reduce"):
        for index, (op, j) in enumerate(getattr(genotype, cell)):
            node = index // 2
            edge = edge_label(cell, sum(2 + n for n in range(node)) + j)
            assert kept[edge][candidates.index(op)], (cell, index, op)


def test_options_are_checked_and_beta_regularization_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^algorithm.keep must be an integer >= 2"):
        _drnas(keep=1)
    with pytest.raises(ConfigError, match=r"^algorithm.regularization applies to architecture "
                                          r"weights that are softmax\(alpha\); algorithm 'drnas'"):
        _drnas(regularization="beta", beta_weight=1.0)


def test_nb201_searches_in_one_stage() -> None:
    supernet = get_space("nb201").supernet(num_classes=2, channels=4, layers=1)
    module = create_algorithm("drnas", supernet, num_classes=2, cfg={})
    assert module.stages == 1 and module.stage_start(30, 50) == (0, 0, 50)
    assert all(module.trains_architecture(epoch, 50) for epoch in range(50))


def test_darts_space_prunes_and_resumes_exactly_after_pruning(tmp_path, monkeypatch) -> None:
    # searching and retraining on both spaces: tests/test_algorithm_spaces.py (every declared pair)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"

    class Snapshot(pl.Callback):  # the run dir as a crash in epoch 1 (after the pruning) leaves it
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.current_epoch == 1 and batch_idx == 0:  # its step checkpoint is written
                shutil.copytree(straight, resumed)

    build = train_module.build_trainer
    monkeypatch.setattr(train_module, "build_trainer",
                        lambda cfg, run_dir, callbacks: build(cfg, run_dir, [*callbacks, Snapshot()]))
    result = train(compose_search(f"run_dir={straight}", "algorithm=drnas", "algorithm.keep=3",
                                  "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                                  "checkpoint.every_n_steps=1"))
    monkeypatch.setattr(train_module, "build_trainer", build)
    snapshot = load_checkpoint_file(resumed / "checkpoints" / "last.ckpt")
    # batch 0 of epoch 1: 3 batches, 2 optimizer steps (weights, alphas) each
    assert snapshot["global_step"] == 6 and snapshot["state_dict"]["pruning.stage"] == 1
    train(compose_search(f"resume={resumed}"))
    states = [load_checkpoint_file(d / "checkpoints" / "last.ckpt")["state_dict"] for d in (straight, resumed)]
    assert states[0].keys() == states[1].keys()
    for key, value in states[0].items():
        torch.testing.assert_close(states[1][key], value, rtol=0, atol=1e-6, msg=key)
    labels = list(get_space("darts").supernet(channels=4, layers=3).choice_points())
    kept = {label: states[0][f"pruning.kept_{i}"] for i, label in enumerate(labels)}
    assert all(int(mask.sum()) == 3 for mask in kept.values())
    _assert_genotype_in_kept(result["genotype"], kept)
    documents = [load_genotype_file(d / "genotype.json") for d in (straight, resumed)]
    assert documents[0].genotype == documents[1].genotype == result["genotype"].to_dict()
