"""Supernet validation: the evaluated path normalizes with its batch's BatchNorm statistics,
and after a short search every algorithm's val/acc tracks its train/acc."""

from __future__ import annotations

from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from oneshot.search.algorithms import algorithm_space_options, create_algorithm, list_algorithms
from oneshot.search.batchnorm import batch_statistics
from oneshot.training.datamodules import SearchDataModule
from supernets.nb201.search import Nb201Supernet
from tasks.synthetic import make_synthetic

SMALL = {"enas": {"controller_steps": 2, "derive_samples": 2},
         "spos": {"search": {"population": 2, "cycles": 2, "calib_batches": 1, "eval_batches": 1}}}


def _algorithm(name: str, **cfg: Any) -> pl.LightningModule:
    cfg = {**SMALL.get(name, {}), **cfg}
    supernet = Nb201Supernet(num_classes=2, channels=4, layers=1,
                             **algorithm_space_options(name, Nb201Supernet, cfg))
    return create_algorithm(name, supernet, num_classes=2, cfg=cfg)


def _norms(module: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("name", list_algorithms())
def test_validation_normalizes_with_batch_statistics(name: str) -> None:
    module = _algorithm(name)
    supernet = module.supernet.eval()
    for m in _norms(supernet):  # running statistics no batch could have
        m.running_mean.fill_(5.0)
        m.running_var.fill_(0.01)
    x = torch.randn(16, 3, 8, 8)
    arch = (module.supernet.sampled_arch(module.current_choices()) if name == "spos"
            else module.eval_architecture())  # SPOS validates sampled paths
    with torch.no_grad():
        logits = module.validation_logits(x, arch)
        for m in _norms(supernet):  # validation leaves the running statistics and modes alone
            assert torch.all(m.running_mean == 5.0) and torch.all(m.running_var == 0.01)
            assert int(m.num_batches_tracked) == 0 and not m.training and m.track_running_stats
        with_running = supernet(x, arch)
        supernet.train()
        with_batch = supernet(x, arch)  # train mode: batch statistics (and updates the running ones)
        supernet.eval()
    torch.testing.assert_close(logits, with_batch)
    assert not torch.allclose(with_running, with_batch, atol=1e-3)


def test_batch_statistics_leave_running_statistics_and_modes_untouched() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)).eval()
    bn = net[1]
    bn.running_mean.fill_(3.0)
    x = torch.randn(8, 3, 4, 4)
    with torch.no_grad(), batch_statistics(net):
        y = net(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(bn.running_mean, torch.full((4,), 3.0))
    assert int(bn.num_batches_tracked) == 0 and not bn.training and bn.track_running_stats


def _search(name: str, epochs: int) -> dict[str, float]:
    """A short search of a tiny supernet on an easy synthetic task; the last epoch's metrics."""
    pl.seed_everything(0, verbose=False)
    dataset = make_synthetic(num_train=256, num_test=8, num_classes=2, image_size=8, noise=0.2)
    data = SearchDataModule(dataset, batch_size=16, eval_batch_size=80)
    module = _algorithm(name, weight_optimizer={"lr": 0.05})
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=data)
    return {key: float(trainer.callback_metrics[key]) for key in ("train/acc", "val/acc")}


@pytest.mark.parametrize("name", list_algorithms())
def test_validation_accuracy_tracks_training_accuracy(name: str) -> None:
    metrics = _search(name, epochs=2)
    assert metrics["val/acc"] > 0.65, metrics  # the evaluated path learns the task (chance: 0.5)
    assert metrics["val/acc"] > metrics["train/acc"] - 0.15, metrics  # as well as training says
