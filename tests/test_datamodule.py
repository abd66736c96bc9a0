"""Search and retrain data modules: split loaders, on-device augmentation, tiny Trainer runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from oneshot.datamodule import RetrainDataModule, SearchDataModule
from tasks import TaskError, load_task
from tasks.augment import normalize
from tasks.split import search_split


@pytest.fixture(scope="module")
def dataset():
    return load_task("synthetic", num_train=64, num_test=20, num_classes=4, image_size=8)


class Recorder(pl.LightningModule):
    """Minimal manual-optimization module that records the batches it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.layer = torch.nn.Linear(3 * 8 * 8, 4)
        self.train_batches: list = []
        self.val_batches: list = []
        self.epochs_seen: list[int] = []

    def training_step(self, batch, batch_idx):
        self.train_batches.append(batch)
        x, y = batch["train"] if isinstance(batch, dict) else batch
        optimizer = self.optimizers()
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(self.layer(x.flatten(1)), y)
        self.manual_backward(loss)
        optimizer.step()

    def validation_step(self, batch, batch_idx):
        self.val_batches.append(batch)

    def test_step(self, batch, batch_idx):
        self.val_batches.append(batch)

    def on_train_epoch_start(self) -> None:
        loader = self.trainer.train_dataloader
        first = loader["train"] if isinstance(loader, dict) else loader
        self.epochs_seen.append(first.sampler.epoch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      use_distributed_sampler=False, default_root_dir=tmp_path, **kwargs)


def test_search_loaders_use_disjoint_halves(dataset) -> None:
    module = SearchDataModule(dataset, batch_size=8, seed=3, subset=40, eval_batch_size=16)
    weight, arch = search_split(64, 3, 40)
    assert torch.equal(module.weight_idx, weight) and torch.equal(module.arch_idx, arch)
    loaders = module.train_dataloader().iterables
    assert len(loaders["train"]) == 2 and len(loaders["val"]) == 2
    train_labels = torch.cat([y for _, y in loaders["train"]])
    assert train_labels.shape == (16,)
    val_batches = list(module.val_dataloader())
    assert [len(y) for _, y in val_batches] == [16, 4]
    assert torch.equal(torch.cat([x for x, _ in val_batches]), dataset.train_images[arch])


def test_search_training_run_augments_both_halves(dataset, tmp_path: Path) -> None:
    module = SearchDataModule(dataset, batch_size=8, seed=0)
    model = Recorder()
    _trainer(tmp_path, max_epochs=2, limit_train_batches=2, limit_val_batches=1).fit(
        model, datamodule=module)
    assert len(model.train_batches) == 4 and model.epochs_seen == [0, 1]
    for batch in model.train_batches:
        assert set(batch) == {"train", "val"}
        for x, y in batch.values():
            assert x.dtype == torch.float32 and x.shape == (8, 3, 8, 8) and y.shape == (8,)
    raw = dataset.train_images[module.arch_idx[:8]]
    assert len(model.val_batches) == 3
    x, y = model.val_batches[0]
    assert torch.allclose(x, normalize(raw, dataset.mean, dataset.std))
    assert torch.equal(y, dataset.train_labels[module.arch_idx[:8]])


def test_retrain_module_run_and_test(dataset, tmp_path: Path) -> None:
    module = RetrainDataModule(dataset, batch_size=16, cutout=4, eval_batch_size=10)
    model = Recorder()
    trainer = _trainer(tmp_path, max_steps=3, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=module)
    assert len(model.train_batches) == 3
    x, _ = model.train_batches[0]
    assert x.shape == (16, 3, 8, 8) and x.dtype == torch.float32
    assert (x == 0).all(dim=1).flatten(1).sum(1).min() >= 4
    trainer.test(model, datamodule=module, verbose=False)
    x, y = model.val_batches[-1]
    assert torch.allclose(x, normalize(dataset.test_images[10:], dataset.mean, dataset.std))


def test_batch_larger_than_half_is_an_error(dataset) -> None:
    module = SearchDataModule(dataset, batch_size=32, subset=20)
    with pytest.raises(TaskError, match="batch_size 32 is larger than the 10 training images"):
        module.train_dataloader()
