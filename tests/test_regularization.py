"""algorithm.regularization=beta: the Beta-Decay term of beta-DARTS, its gradient, its weight ramp,
and a search that adds it."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_search
from oneshot.errors import ConfigError
from oneshot.retrain import retrain
from oneshot.search.algorithms import algorithm_defaults, create_algorithm
from oneshot.search.algorithms.base import OneShotSearch
from oneshot.search.regularization import BetaDecay, beta_decay, pop_regularization, ramp
from oneshot.train import train
from supernets.genotype_file import load_genotype_file
from supernets.spaces import get_space


def _rows() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(size, generator=generator, dtype=torch.float64) * 2 for size in (8, 5, 2)]


def test_beta_decay_is_the_mean_logsumexp_of_the_rows() -> None:
    rows = _rows()
    expected = sum(math.log(sum(math.exp(v) for v in row.tolist())) for row in rows) / len(rows)
    assert beta_decay(rows).item() == pytest.approx(expected, rel=1e-12)


def test_beta_decay_gradient_is_softmax_over_the_number_of_rows() -> None:
    rows = [row.requires_grad_() for row in _rows()]
    grads = torch.autograd.grad(beta_decay(rows), rows)
    for row, grad in zip(rows, grads):
        torch.testing.assert_close(grad, torch.softmax(row.detach(), -1) / len(rows))
    assert torch.autograd.gradcheck(lambda *r: beta_decay(r), tuple(rows))  # vs finite differences


def test_ramp_rises_linearly_from_zero() -> None:
    values = [ramp(epoch, 50, 25.0) for epoch in range(50)]
    assert values[0] == 0.0 and values[49] == pytest.approx(24.5)
    # the reference code's 50 * epoch / 100 at every epoch of its 50-epoch search
    assert values == pytest.approx([50 * epoch / 100 for epoch in range(50)])
    assert ramp(1, 2, 8.0) == 4.0


def test_beta_decay_term_and_gradient_carry_the_ramped_weight() -> None:
    rows = _rows()
    term, grads = BetaDecay(10.0)(rows, 3, 4)
    assert term.item() == pytest.approx(7.5 * beta_decay(rows).item())
    for row, grad in zip(rows, grads):
        torch.testing.assert_close(grad, 7.5 * torch.softmax(row, -1) / len(rows))
    _, first = BetaDecay(10.0)(rows, 0, 4)
    assert all(not grad.any() for grad in first)


def test_options_are_taken_out_and_checked() -> None:
    options = {"regularization": "none", "beta_weight": 25.0, "unrolled": False}
    assert pop_regularization(options) is None and options == {"unrolled": False}
    assert pop_regularization({"regularization": "beta", "beta_weight": 3}) == BetaDecay(3.0)
    with pytest.raises(ConfigError, match="^unknown algorithm.regularization 'l2'; choose one of: none, beta$"):
        pop_regularization({"regularization": "l2", "beta_weight": 1.0})
    with pytest.raises(ConfigError, match=r"^algorithm.beta_weight must be a number >= 0, got -1.0$"):
        pop_regularization({"regularization": "beta", "beta_weight": -1.0})


def test_every_softmax_algorithm_has_the_option_off_by_default() -> None:
    for name in ("darts", "gdas", "snas", "proxyless", "sdarts", "pcdarts"):
        defaults = algorithm_defaults(name)
        assert defaults["regularization"] == "none" and defaults["beta_weight"] == 25.0


@pytest.mark.parametrize("algorithm", ["enas", "spos", "drnas"])
def test_an_algorithm_without_softmax_alphas_refuses_it(algorithm: str) -> None:
    supernet = get_space("darts").supernet(num_classes=2, channels=4, layers=3)
    with pytest.raises(ConfigError, match="^algorithm.regularization applies to architecture weights "
                                          f"that are softmax\\(alpha\\); algorithm '{algorithm}' has none"):
        create_algorithm(algorithm, supernet, num_classes=2,
                         cfg={"regularization": "beta", "beta_weight": 1.0})


@pytest.mark.parametrize("algorithm", ["darts", "sdarts", "gdas", "snas", "proxyless"])
def test_every_softmax_algorithm_adds_the_ramped_term_to_its_alphas(algorithm: str) -> None:
    supernet = get_space("darts").supernet(num_classes=2, channels=4, layers=3)
    module = create_algorithm(algorithm, supernet, num_classes=2,
                              cfg={"regularization": "beta", "beta_weight": 6.0})
    params = module.arch.parameters_list()
    with torch.no_grad():
        for i, param in enumerate(params):
            param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(i)))
    before = [param.detach().clone() for param in params]
    optimizer = torch.optim.SGD(params, lr=1.0)
    step = SimpleNamespace(
        arch=module.arch, arch_regularization=module.arch_regularization, current_epoch=1,
        trainer=SimpleNamespace(max_epochs=3, strategy=SimpleNamespace(reduce=lambda t, reduce_op: t)),
        optimizers=lambda: [None, optimizer], log=lambda *_, **__: None)
    OneShotSearch.apply_arch_gradients(step, [torch.zeros_like(param) for param in params])
    weight = 6.0 * 1 / 3  # epoch 1 of 3
    for old, new in zip(before, params):
        torch.testing.assert_close(old - new.detach(), weight * torch.softmax(old, -1) / len(params))


def test_the_architecture_step_adds_the_term_to_the_alphas_not_the_edge_betas() -> None:
    supernet = get_space("darts").supernet(num_classes=2, channels=4, layers=3)
    module = create_algorithm("pcdarts", supernet, num_classes=2, cfg={
        "partial_channels": 1, "regularization": "beta", "beta_weight": 4.0})
    params = module.arch.parameters_list()
    alphas = len(module.arch.candidates)
    assert len(params) > alphas  # the betas of edge normalization follow the alphas
    with torch.no_grad():
        for i, param in enumerate(params):
            param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(i)))
    before = [param.detach().clone() for param in params]
    optimizer, logged = torch.optim.SGD(params, lr=1.0), {}
    step = SimpleNamespace(  # what apply_arch_gradients reads of the module and its trainer
        arch=module.arch, arch_regularization=module.arch_regularization, current_epoch=1,
        trainer=SimpleNamespace(max_epochs=2, strategy=SimpleNamespace(reduce=lambda t, reduce_op: t)),
        optimizers=lambda: [None, optimizer], log=lambda name, value, **_: logged.update({name: value}))
    OneShotSearch.apply_arch_gradients(step, [torch.zeros_like(param) for param in params])
    weight = 4.0 * 1 / 2  # epoch 1 of 2
    for old, new in zip(before[:alphas], params[:alphas]):
        torch.testing.assert_close(old - new.detach(), weight * torch.softmax(old, -1) / alphas)
    assert all(torch.equal(old, new) for old, new in zip(before[alphas:], params[alphas:]))
    assert logged["train/arch_reg"].item() == pytest.approx(weight * beta_decay(before[:alphas]).item())


def _scalars(run_dir, tag: str) -> list[float]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [event.value for event in events.Scalars(tag)]


def test_darts_with_beta_searches_logs_the_term_and_retrains(tmp_path) -> None:
    result = train(compose_search(f"run_dir={tmp_path}", "algorithm.regularization=beta",
                                  "algorithm.beta_weight=8", "trainer.limit_train_batches=1",
                                  "trainer.limit_val_batches=1"))
    # epoch 0: weight 0; epoch 1 of 2: weight 4 times logsumexp of nearly uniform rows of 8 (log 8)
    arch_reg = _scalars(tmp_path, "train/arch_reg_epoch")
    assert arch_reg[0] == 0.0 and arch_reg[1] == pytest.approx(4 * math.log(8), rel=1e-3)
    document = load_genotype_file(tmp_path / "genotype.json")
    assert get_space("darts").genotype_from_dict(document.genotype) == result["genotype"]
    metrics = retrain(_compose_retrain(f"genotype={tmp_path}", f"run_dir={tmp_path / 'retrain'}"))
    assert metrics["genotype"] == str(result["genotype"]) and metrics["params"] > 0


def _compose_retrain(*overrides: str):
    from hydra import compose, initialize_config_module

    tiny = ["task=synthetic", "task.num_train=32", "task.num_test=16", "task.image_size=8",
            "data.batch_size=8", "data.eval_batch_size=16", "trainer.accelerator=cpu",
            "trainer.max_epochs=1", "trainer.limit_train_batches=1", "network.channels=4",
            "network.layers=3", "network.auxiliary=false", "trainer.enable_progress_bar=false"]
    with initialize_config_module(config_module="oneshot.conf.retrain", version_base="1.3"):
        return compose("retrain", overrides=[*tiny, *overrides])
