"""Search and retrain data modules: split loaders, on-device augmentation, tiny Trainer runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from oneshot.training.datamodules import RetrainDataModule, SearchDataModule
from tasks import ImageDataset, TaskError, load_task
from tasks.augment import normalize
from tasks.split import search_split


@pytest.fixture(scope="module")
def dataset():
    return load_task("synthetic", num_train=64, num_test=20, num_classes=4, image_size=8)


def class_sorted(num_classes: int = 10, per_class: int = 20) -> ImageDataset:
    """Labels stored class by class (0,0,...,9,9) as an image-folder tree is read; each image's
    pixels hold its index, so a batch shows which images it took."""
    n = num_classes * per_class
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 8, 8).clone()
    labels = torch.arange(n) // per_class
    return ImageDataset(name="sorted", train_images=images, train_labels=labels,
                        test_images=images.clone(), test_labels=labels.clone(),
                        num_classes=num_classes, mean=(0.5,) * 3, std=(0.25,) * 3)


def _ids(images: torch.Tensor) -> list[int]:
    return images[:, 0, 0, 0].long().tolist()


def _classes(labels: torch.Tensor) -> int:
    return len(set(labels.tolist()))


class Recorder(pl.LightningModule):
    """Minimal manual-optimization module that records the batches it is given."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.layer = torch.nn.Linear(3 * 8 * 8, num_classes)
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
    loader = module.val_dataloader()
    val_batches = list(loader)
    assert [len(y) for _, y in val_batches] == [16, 4]
    order = arch[torch.cat(list(loader.sampler))]
    assert sorted(order.tolist()) == sorted(arch.tolist())
    assert torch.equal(torch.cat([x for x, _ in val_batches]), dataset.train_images[order])


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
    first = module.arch_idx[next(iter(module.val_dataloader().sampler))]
    assert len(model.val_batches) == 3
    x, y = model.val_batches[0]
    assert torch.allclose(x, normalize(dataset.train_images[first], dataset.mean, dataset.std))
    assert torch.equal(y, dataset.train_labels[first])
    assert all(torch.equal(batch[1], y) for batch in model.val_batches)  # the same every epoch


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
    last = list(module.test_dataloader().sampler)[-1]
    x, y = model.val_batches[-1]
    assert torch.allclose(x, normalize(dataset.test_images[last], dataset.mean, dataset.std))
    assert torch.equal(y, dataset.test_labels[last])


def test_batch_larger_than_half_is_an_error(dataset) -> None:
    module = SearchDataModule(dataset, batch_size=32, subset=20)
    with pytest.raises(TaskError, match="batch_size 32 is larger than the 10 training images"):
        module.train_dataloader()


def test_search_eval_prefixes_of_class_sorted_data_mix_classes() -> None:
    data = class_sorted()
    module = SearchDataModule(data, batch_size=16, seed=0, eval_batch_size=20)
    loader = module.val_dataloader()  # what limit_val_batches, derive_batches, eval_batches read
    x, y = next(iter(loader))
    assert _classes(y) >= 5 and torch.equal(y, data.train_labels[_ids(x)])
    ids = [i for x, _ in loader for i in _ids(x)]
    assert sorted(ids) == sorted(module.arch_idx.tolist())  # the whole half, each image once
    loader.sampler.set_epoch(3)
    assert [i for x, _ in loader for i in _ids(x)] == ids  # the same order every epoch
    again = SearchDataModule(data, batch_size=16, seed=0, eval_batch_size=20).val_dataloader()
    assert [i for x, _ in again for i in _ids(x)] == ids
    other = SearchDataModule(data, batch_size=16, seed=1, eval_batch_size=20).val_dataloader()
    assert [i for x, _ in other for i in _ids(x)] != ids
    for name, half in module.train_dataloader().iterables.items():  # BN calibration, rewards
        assert _classes(next(iter(half))[1]) >= 5, name


def test_limited_retrain_test_on_class_sorted_data_sees_many_classes(tmp_path: Path) -> None:
    data = class_sorted()
    module = RetrainDataModule(data, batch_size=16, eval_batch_size=64)
    model = Recorder(num_classes=10)
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                       limit_test_batches=1, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=module)
    trainer.test(model, datamodule=module, verbose=False)
    (val_x, val_y), (test_x, test_y) = model.val_batches
    assert len(test_y) == 64 and _classes(test_y) >= 5 and _classes(val_y) >= 5
    assert torch.equal(test_y, val_y) and torch.equal(test_x, val_x)
    full = _trainer(tmp_path)
    model.val_batches.clear()
    full.test(model, datamodule=module, verbose=False)
    labels = torch.cat([y for _, y in model.val_batches])
    assert sorted(labels.tolist()) == data.test_labels.tolist()  # every test image, once
