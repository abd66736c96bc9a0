"""SDARTS: the weight step trains randomly or adversarially perturbed softmax weights inside the
epsilon ball; the architecture step is DARTS's."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from conftest import compose_search
from oneshot.errors import ConfigError
from oneshot.search.algorithms import create_algorithm
from oneshot.search.algorithms.sampling import step_generator
from oneshot.search.algorithms.sdarts import (PERTURBATION_STREAM, adversarial_delta,
                                              perturbation_radius, perturbed, project_rows,
                                              uniform_delta)
from oneshot.train import train
from oneshot.training.datamodules import SearchDataModule
from supernets.genotype_file import load_genotype_file
from supernets.nb201.search import Nb201Supernet
from supernets.spaces import get_space
from tasks import load_task
from test_algorithm_spaces import NO_SPACE, SPACE_TINY
from test_auxiliary_skip import _retrain_tiny

EPSILON = 0.3


def _supernet() -> Nb201Supernet:
    torch.manual_seed(0)
    return Nb201Supernet(channels=4, layers=1)


def _rows(supernet: Nb201Supernet) -> dict[str, torch.Tensor]:
    """Softmax rows of spread-out logits, one per choice point."""
    generator = torch.Generator().manual_seed(1)
    return {label: torch.softmax(2.0 * torch.randn(len(names), generator=generator), dim=-1)
            for label, names in supernet.choice_points().items()}


def _batch(size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return torch.randn(size, 3, 8, 8, generator=generator), torch.randint(0, 10, (size,),
                                                                            generator=generator)


def test_projection_clamps_to_the_unit_interval_and_renormalizes() -> None:
    rows = project_rows({"a": torch.tensor([0.5, -0.2, 0.9]), "b": torch.tensor([-0.1, -0.3, -0.2])})
    torch.testing.assert_close(rows["a"], torch.tensor([0.5, 0.0, 0.9]) / 1.4)
    assert torch.equal(rows["b"], torch.tensor([1.0, 0.0, 0.0]))  # all clamped: its largest entry


def test_random_perturbation_is_uniform_in_the_ball_and_seeded_per_step() -> None:
    weights = _rows(_supernet())
    delta = uniform_delta(weights, EPSILON, step_generator(0, 5, PERTURBATION_STREAM))
    values = torch.cat(list(delta.values()))
    assert values.abs().max() <= EPSILON and values.abs().max() > 0.9 * EPSILON
    assert (values > 0).any() and (values < 0).any()
    again = uniform_delta(weights, EPSILON, step_generator(0, 5, PERTURBATION_STREAM))
    other = uniform_delta(weights, EPSILON, step_generator(0, 6, PERTURBATION_STREAM))
    assert all(torch.equal(delta[k], again[k]) for k in delta)
    assert not any(torch.equal(delta[k], other[k]) for k in delta)
    rows = perturbed(weights, delta)
    for label, row in rows.items():
        assert (row >= 0).all() and torch.isclose(row.sum(), torch.tensor(1.0))
        torch.testing.assert_close(row, project_rows({label: weights[label] + delta[label]})[label])


def test_radius_grows_linearly_from_start_to_end() -> None:
    radii = [perturbation_radius(epoch, 50, start=0.03, end=0.3) for epoch in (0, 25, 50)]
    assert radii == pytest.approx([0.03, 0.165, 0.3])


def test_adversarial_perturbation_raises_the_weight_loss_inside_the_ball() -> None:
    supernet = _supernet()
    x, y = _batch()

    def loss_of(rows) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(supernet(x, rows), y)

    weights = _rows(supernet)
    delta = adversarial_delta(loss_of, weights, EPSILON, 7, step_generator(0, 0, 0))
    start = uniform_delta(weights, EPSILON, step_generator(0, 0, 0))  # the attack's random start
    assert max(d.abs().max() for d in delta.values()) <= EPSILON + 1e-6
    with torch.no_grad():
        clean, attacked = loss_of(weights), loss_of(perturbed(weights, delta))
        random_start = loss_of(perturbed(weights, start))
    assert attacked > clean and attacked > random_start


def test_an_attack_that_cannot_raise_the_loss_leaves_the_weights_unperturbed() -> None:
    weights = {"a": torch.tensor([0.2, 0.3, 0.5])}

    def peaked_at_clean(rows) -> torch.Tensor:  # maximal exactly at the clean weights
        return -((rows["a"] - weights["a"]) ** 2).sum()

    delta = adversarial_delta(peaked_at_clean, weights, 0.1, 3, step_generator(0, 0, 0))
    assert torch.equal(delta["a"], torch.zeros(3))


def test_the_attack_leaves_the_batchnorm_statistics_as_they_were() -> None:
    module = create_algorithm("sdarts", _supernet(), num_classes=10,
                              cfg={"perturbation": "adversarial", "attack_steps": 2})
    buffers = {k: v.clone() for k, v in module.supernet.state_dict().items() if "running" in k}
    delta = module.perturbation_delta(_batch(), module.arch_weights())
    assert any(d.abs().max() > 0 for d in delta.values())
    after = module.supernet.state_dict()
    assert buffers and all(torch.equal(after[k], v) for k, v in buffers.items())


@pytest.mark.parametrize("perturbation", ["random", "adversarial"])
def test_alpha_gradients_are_darts(perturbation: str) -> None:
    batch_w, batch_a = _batch(), _batch(6)

    def alpha_grads(name: str, **options) -> list[torch.Tensor]:
        module = create_algorithm(name, _supernet(), num_classes=10, cfg=options)
        taken: list[torch.Tensor] = []
        module.apply_arch_gradients = lambda grads: taken.extend(grads)
        module.architecture_step(batch_w, batch_a)
        return taken

    darts, sdarts = alpha_grads("darts"), alpha_grads("sdarts", perturbation=perturbation)
    assert len(darts) == 6 and all(torch.equal(a, b) for a, b in zip(darts, sdarts))


class ArchRecorder(pl.Callback):
    """The architecture rows of every supernet call of the first training step."""

    def on_fit_start(self, trainer, pl_module) -> None:
        self.calls: list[tuple[dict[str, torch.Tensor], int]] = []

        def record(module, args) -> None:
            self.calls.append(({k: v.detach().clone() for k, v in args[1].items()},
                               pl_module.global_step))
        pl_module.supernet.register_forward_pre_hook(record)


def test_weight_step_trains_the_perturbed_rows_and_arch_step_the_clean_ones(tmp_path) -> None:
    module = create_algorithm("sdarts", _supernet(), num_classes=10, cfg={"seed": 7})
    before = {k: v.detach().clone() for k, v in module.arch.softmax().items()}
    recorder = ArchRecorder()
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                         callbacks=[recorder], default_root_dir=tmp_path)
    dataset = load_task("synthetic", num_train=32, num_test=16, image_size=8)
    trainer.fit(module, datamodule=SearchDataModule(dataset, batch_size=8, seed=0,
                                                     eval_batch_size=16))
    (arch_rows, _), (weight_rows, step) = recorder.calls
    assert all(torch.equal(arch_rows[k], before[k]) for k in before)  # DARTS' step: clean softmax
    clean = module.arch_weights()  # the alphas after the architecture step
    delta = uniform_delta(clean, 0.03, step_generator(7, step, PERTURBATION_STREAM))
    expected = perturbed(clean, delta)  # epsilon_start in the first epoch
    assert all(torch.equal(weight_rows[k], expected[k]) for k in expected)
    assert not any(torch.equal(weight_rows[k], clean[k]) for k in clean)


def test_bad_options_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="unknown algorithm.perturbation 'gaussian'; choose "
                                          "one of: random, adversarial"):
        create_algorithm("sdarts", _supernet(), num_classes=10, cfg={"perturbation": "gaussian"})
    with pytest.raises(ConfigError, match="0 <= epsilon_start <= epsilon, got epsilon_start=0.5"):
        create_algorithm("sdarts", _supernet(), num_classes=10, cfg={"epsilon_start": 0.5})


@pytest.mark.parametrize("space, options", [
    ("nb201", ()), ("darts", ("algorithm.auxiliary_skip=true",))])
def test_adversarial_sdarts_searches_and_its_genotype_retrains(tmp_path: Path, space: str,
                                                               options: tuple[str, ...]) -> None:
    result = train(compose_search(f"run_dir={tmp_path}", "algorithm=sdarts",
                                  "algorithm.perturbation=adversarial", "algorithm.attack_steps=2",
                                  *options, *SPACE_TINY[space], "trainer.max_epochs=1",
                                  "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
                                  base=NO_SPACE))
    document = load_genotype_file(tmp_path / "genotype.json")
    assert document.meta["algorithm"] == "sdarts"
    assert get_space(space).genotype_from_dict(document.genotype) == result["genotype"]
    metrics = _retrain_tiny(tmp_path, space)
    assert metrics["genotype"] == str(result["genotype"]) and metrics["params"] > 0
