"""Lightning data modules for the search (weight/architecture halves) and the retraining phase.

Batches stay uint8 on the host and are augmented on the device in on_after_batch_transfer.
Evaluation loaders read every image once in a fixed seeded order, so their first batches (read by
limit_val_batches, ENAS's derive_batches, SPOS's eval_batches) are a uniform sample of the classes.
The loaders use ShuffledBatchSampler, so run the Trainer with use_distributed_sampler=False.
A dataset whose images are files (tasks.streaming.FileImages) is read in the same batches and
order, each batch decoded by a DataLoader worker.
"""

from __future__ import annotations

from typing import Any, Callable

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader

from tasks.augment import BatchAugment, eval_transform
from tasks.data import ImageDataset
from tasks.errors import TaskError
from tasks.loader import make_loader
from tasks.seeding import seeded_generator
from tasks.split import search_split
from tasks.streaming import FileImages, make_stream_loader

Batch = tuple[torch.Tensor, torch.Tensor]
Images = torch.Tensor | FileImages


class _DeviceAugmentDataModule(pl.LightningDataModule):
    """Augments training batches (a pair or a dict of pairs) on device; normalizes eval batches."""

    def __init__(self, dataset: ImageDataset, *, batch_size: int, eval_batch_size: int | None,
                 cutout: int, seed: int, channels_last: bool = False) -> None:
        super().__init__()
        self.seed = seed
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise TaskError(f"batch sizes must be >= 1, got {batch_size} and {eval_batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.augment = BatchAugment(dataset.mean, dataset.std, cutout=cutout,
                                    crop_padding=dataset.crop_padding,
                                    random_resized=dataset.random_resized_crop)
        self.evaluate = eval_transform(dataset.mean, dataset.std)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        layout = self.memory_format
        if self.trainer is not None and self.trainer.training:
            generator = self._augment_generator(_first_images(batch).device)

            def transform(x: torch.Tensor) -> torch.Tensor:
                return self.augment(x, generator=generator).contiguous(memory_format=layout)
        else:
            def transform(x: torch.Tensor) -> torch.Tensor:
                return self.evaluate(x).contiguous(memory_format=layout)
        if isinstance(batch, dict):
            return {key: _apply(transform, pair) for key, pair in batch.items()}
        return _apply(transform, batch)

    def _augment_generator(self, device: torch.device) -> torch.Generator:
        """A generator seeded by (seed, epoch, step, rank): resuming repeats the same augmentation."""
        trainer = self.trainer
        return seeded_generator(self.seed, trainer.current_epoch, trainer.global_step,
                                trainer.global_rank, device=device)

    def _train_loader(self, indices: torch.Tensor | None, seed: int) -> DataLoader:
        images, labels = self._select(self.dataset.train_images, self.dataset.train_labels, indices)
        if len(labels) < self.batch_size:
            raise TaskError(f"batch_size {self.batch_size} is larger than the {len(labels)} "
                            f"training images available; lower batch_size or use more data")
        return _loader(images, labels, batch_size=self.batch_size, shuffle=True, seed=seed,
                       drop_last=True)

    def _eval_loader(self, images: torch.Tensor, labels: torch.Tensor,
                     indices: torch.Tensor | None = None) -> DataLoader:
        """Every image once, in one seeded order that never changes: a limited evaluation (its
        first batches) is a uniform sample even when the images are stored class by class."""
        images, labels = self._select(images, labels, indices)
        return _loader(images, labels, batch_size=self.eval_batch_size, shuffle=True,
                       seed=self.seed, drop_last=False, reshuffle=False)

    @staticmethod
    def _select(images: Images, labels: torch.Tensor,
                indices: torch.Tensor | None) -> tuple[Images, torch.Tensor]:
        return (images, labels) if indices is None else (images[indices], labels[indices])


def _loader(images: Images, labels: torch.Tensor, **options: Any) -> DataLoader:
    """Batches from memory, or decoded from their files by worker processes (same order)."""
    if isinstance(images, FileImages):
        return make_stream_loader(images, labels, **options)
    return make_loader(images, labels, **options)


def _first_images(batch: Any) -> torch.Tensor:
    return next(iter(batch.values()))[0] if isinstance(batch, dict) else batch[0]


def _apply(transform: Callable[[torch.Tensor], torch.Tensor], pair: Batch) -> Batch:
    images, labels = pair
    return transform(images), labels


class SearchDataModule(_DeviceAugmentDataModule):
    """Search data: training batches are {"train": weight-half pair, "val": architecture-half pair}.

    Both halves are augmented (as in DARTS); val_dataloader is the architecture half, only
    normalized.
    """

    def __init__(self, dataset: ImageDataset, *, batch_size: int, seed: int = 0,
                 subset: int | None = None, cutout: int = 0,
                 eval_batch_size: int | None = None, channels_last: bool = False) -> None:
        super().__init__(dataset, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         cutout=cutout, seed=seed, channels_last=channels_last)
        self.weight_idx, self.arch_idx = search_split(len(dataset.train_labels), seed, subset)

    def train_dataloader(self) -> CombinedLoader:
        loaders = {"train": self._train_loader(self.weight_idx, self.seed),
                   "val": self._train_loader(self.arch_idx, self.seed + 1)}
        return CombinedLoader(loaders, mode="max_size_cycle")

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.dataset.train_images, self.dataset.train_labels,
                                 self.arch_idx)


class RetrainDataModule(_DeviceAugmentDataModule):
    """Retraining data: the full training set augmented (with cutout), the test set for val/test."""

    def __init__(self, dataset: ImageDataset, *, batch_size: int, seed: int = 0, cutout: int = 16,
                 eval_batch_size: int | None = None) -> None:
        super().__init__(dataset, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         cutout=cutout, seed=seed)

    def train_dataloader(self) -> DataLoader:
        return self._train_loader(None, self.seed)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.dataset.test_images, self.dataset.test_labels)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.dataset.test_images, self.dataset.test_labels)
