"""DartsSearch (first order), the architecture parameters, the algorithm registry, the NaN guard."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from oneshot.search.algorithms import create_algorithm, list_algorithms
from oneshot.search.algorithms.darts import DartsSearch
from oneshot.search.architecture import ArchitectureParameters
from oneshot.training.datamodules import SearchDataModule
from oneshot.errors import ConfigError
from oneshot.errors import NonFiniteLossError
from oneshot.search.guards import NonFiniteLossGuard
from supernets.darts.search import DartsSupernet
from tasks import load_task


@pytest.fixture(scope="module")
def datamodule() -> SearchDataModule:
    dataset = load_task("synthetic", num_train=64, num_test=32, image_size=8)
    return SearchDataModule(dataset, batch_size=8, seed=0, eval_batch_size=16)


def _search(**options) -> DartsSearch:
    torch.manual_seed(0)
    return create_algorithm("darts", DartsSupernet(channels=4, layers=3), num_classes=10,
                            cfg=options)


class BatchRecorder(pl.Callback):
    """Keeps the first (augmented) training batch and a copy of the module before its step."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.batch = batch
            self.before = copy.deepcopy(pl_module)


def _one_step(module: DartsSearch, datamodule: SearchDataModule, tmp_path: Path,
              *callbacks: pl.Callback) -> None:
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, use_distributed_sampler=False,
                         num_sanity_val_steps=0, limit_val_batches=0, callbacks=list(callbacks),
                         default_root_dir=tmp_path)
    trainer.fit(module, datamodule=datamodule)
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 1


def _snapshot(params) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def test_first_order_step_changes_alphas_and_weights(datamodule, tmp_path) -> None:
    module = _search()
    alphas, weights = _snapshot(module.arch.parameters()), _snapshot(module.supernet.parameters())
    _one_step(module, datamodule, tmp_path)
    assert all(not torch.equal(a, b) for a, b in zip(alphas, module.arch.parameters()))
    changed = [not torch.equal(w, p) for w, p in zip(weights, module.supernet.parameters())]
    assert sum(changed) > 0.9 * len(changed)  # ops on one edge all get gradients


def test_weight_step_leaves_alphas_and_alpha_grads_come_from_val_half(datamodule,
                                                                      tmp_path) -> None:
    module = _search(arch_optimizer={"lr": 0.0})
    recorder = BatchRecorder()
    alphas, weights = _snapshot(module.arch.parameters()), _snapshot(module.supernet.parameters())
    _one_step(module, datamodule, tmp_path, recorder)

    assert all(torch.equal(a, b) for a, b in zip(alphas, module.arch.parameters()))
    assert any(not torch.equal(w, p) for w, p in zip(weights, module.supernet.parameters()))

    before = recorder.before
    assert recorder.batch["val"][0].dtype == torch.float32  # augmented on device

    def alpha_grads(half: str) -> tuple[torch.Tensor, ...]:
        x, y = recorder.batch[half]
        loss = before.criterion(before.supernet(x, before.arch.softmax()), y)
        return torch.autograd.grad(loss, before.arch.parameters_list())

    used = [alpha.grad for alpha in module.arch.parameters_list()]
    for got, want in zip(used, alpha_grads("val")):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    assert not all(torch.allclose(got, other, rtol=1e-3, atol=1e-7)
                   for got, other in zip(used, alpha_grads("train")))


def test_optimizers_split_weights_and_alphas(datamodule, tmp_path) -> None:
    module = _search()
    _one_step(module, datamodule, tmp_path)
    weight_opt, arch_opt = (o.optimizer for o in module.optimizers())
    weight_ids = {id(p) for group in weight_opt.param_groups for p in group["params"]}
    arch_ids = {id(p) for group in arch_opt.param_groups for p in group["params"]}
    assert weight_ids == {id(p) for p in module.supernet.parameters()}
    assert arch_ids == {id(p) for p in module.arch.parameters()}
    assert isinstance(weight_opt, torch.optim.SGD) and isinstance(arch_opt, torch.optim.Adam)


def test_genotype_follows_alphas() -> None:
    module = _search()
    with torch.no_grad():
        for label, alpha in module.arch.alphas.items():
            alpha.zero_()
            alpha[module.arch.candidates[label].index("dil_conv_5x5")] = 5.0
    genotype = module.genotype()
    assert {op for op, _ in genotype.normal + genotype.reduce} == {"dil_conv_5x5"}


def test_architecture_parameters() -> None:
    arch = ArchitectureParameters({"normal/edge_0": ["a", "b", "c"], "normal/edge_1": ["a", "b"],
                                   "reduce/edge_0": ["a", "b"]}, init_std=0.5)
    rows = arch.softmax()
    assert [row.shape[0] for row in rows.values()] == [3, 2, 2]
    for row in rows.values():
        torch.testing.assert_close(row.sum(), torch.tensor(1.0))
    assert arch.groups() == {"normal": ["normal/edge_0", "normal/edge_1"],
                             "reduce": ["reduce/edge_0"]}
    assert [p.shape[0] for p in arch.parameters_list()] == [3, 2, 2]
    assert set(arch.state_dict()) == {"alphas.normal/edge_0", "alphas.normal/edge_1",
                                      "alphas.reduce/edge_0"}


def test_algorithm_registry() -> None:
    supernet = DartsSupernet(channels=2, layers=3)
    assert list_algorithms() == ["darts", "drnas", "enas", "gdas", "pcdarts", "proxyless", "sdarts",
                                "snas", "spos"]
    module = create_algorithm("darts", supernet, num_classes=10,
                              cfg={"unrolled": True, "weight_optimizer": {"lr": 0.1}})
    assert module.unrolled and module.weight_optimizer_config.lr == 0.1
    with pytest.raises(ConfigError, match="unknown algorithm 'no_such'; choose one of: darts"):
        create_algorithm("no_such", supernet, num_classes=10, cfg={})
    with pytest.raises(ConfigError, match="bad option for algorithm 'darts'.*learning_rate"):
        create_algorithm("darts", supernet, num_classes=10,
                         cfg={"weight_optimizer": {"learning_rate": 1}})


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_guard_names_epoch_batch_and_value(value: float) -> None:
    guard = NonFiniteLossGuard()
    guard.observe({"weight": torch.tensor(1.5), "architecture": torch.tensor(2.0)},
                  epoch=3, batch=6)
    guard.check()  # finite: nothing raised
    guard.observe({"weight": torch.tensor(value), "architecture": torch.tensor(2.0)},
                  epoch=3, batch=7)
    guard.observe({"weight": torch.tensor(float("nan")), "architecture": torch.tensor(1.0)},
                  epoch=4, batch=0)  # a later bad value does not hide the first one
    with pytest.raises(NonFiniteLossError) as info:
        guard.check()
    message = str(info.value)
    assert f"the weight loss became {value}" in message
    assert "epoch 3, batch 7" in message
    assert "\n" not in message


def test_guard_reads_back_every_step_on_cpu_only() -> None:
    guard = NonFiniteLossGuard(check_every=50)
    assert guard.due(torch.device("cpu"), 7)
    assert not guard.due(torch.device("cuda"), 7)
    assert guard.due(torch.device("cuda"), 100)
