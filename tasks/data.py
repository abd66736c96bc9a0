"""The image dataset every task loads into: uint8 tensors in memory, or image files read while
training (:class:`tasks.streaming.FileImages`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tasks.errors import TaskError
from tasks.streaming import FileImages


@dataclass(frozen=True)
class ImageDataset:
    """Train and test images as uint8 [N, C, H, W] (or files decoded to that shape while
    training) with int64 labels [N] in [0, num_classes).

    ``class_names`` names the labels in order (empty: the labels are their own names);
    ``crop_padding`` and ``random_resized_crop`` choose the training crop (see
    :class:`tasks.augment.BatchAugment`).
    """

    name: str
    train_images: torch.Tensor | FileImages
    train_labels: torch.Tensor
    test_images: torch.Tensor | FileImages
    test_labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...] = ()
    crop_padding: int = 4
    random_resized_crop: bool = False

    def __post_init__(self) -> None:
        if self.class_names and len(self.class_names) != self.num_classes:
            raise TaskError(f"{self.name}: {len(self.class_names)} class names for "
                            f"{self.num_classes} classes")
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if not isinstance(images, FileImages) and (images.dtype != torch.uint8
                                                       or images.dim() != 4):
                raise TaskError(f"{self.name}: {split}_images must be uint8 [N, C, H, W], "
                                f"got {images.dtype} {tuple(images.shape)}")
            if images.shape[1:] != self.train_images.shape[1:]:
                raise TaskError(f"{self.name}: test images are {tuple(images.shape[1:])}, "
                                f"train images {tuple(self.train_images.shape[1:])}")
            if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
                raise TaskError(f"{self.name}: {split}_labels must be int64 [{images.shape[0]}], "
                                f"got {labels.dtype} {tuple(labels.shape)}")
            in_range = not labels.numel() or (
                0 <= int(labels.min()) and int(labels.max()) < self.num_classes)
            if not in_range:
                raise TaskError(f"{self.name}: {split}_labels must lie in [0, {self.num_classes})")
        channels = self.train_images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise TaskError(f"{self.name}: mean and std need {channels} values, "
                            f"got {len(self.mean)} and {len(self.std)}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape (C, H, W) of one image."""
        channels, height, width = self.train_images.shape[1:]
        return channels, height, width

    @property
    def classes(self) -> tuple[str, ...]:
        """The name of each label: ``class_names``, or the label numbers as text."""
        return self.class_names or tuple(str(label) for label in range(self.num_classes))

    @property
    def streamed(self) -> bool:
        """Whether images are decoded from their files while training."""
        return isinstance(self.train_images, FileImages)
