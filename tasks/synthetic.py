"""A small generated image task whose labels a small CNN can learn: class patterns plus noise."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tasks.data import ImageDataset
from tasks.errors import TaskError
from tasks.seeding import seeded_generator


def make_synthetic(*, num_train: int = 512, num_test: int = 256, num_classes: int = 10,
                   image_size: int = 32, noise: float = 0.2, seed: int = 0) -> ImageDataset:
    """Images = a smooth random colour pattern per class + Gaussian noise; same seed, same data."""
    for option, value, low in (("num_train", num_train, 1), ("num_test", num_test, 1),
                               ("num_classes", num_classes, 2), ("image_size", image_size, 1)):
        if value < low:
            raise TaskError(f"synthetic: {option} must be at least {low}, got {value}")
    if noise < 0:
        raise TaskError(f"synthetic: noise must be non-negative, got {noise}")
    generator = seeded_generator(seed)
    coarse = torch.rand(num_classes, 3, 4, 4, generator=generator)
    patterns = F.interpolate(coarse, size=(image_size, image_size), mode="bilinear",
                             align_corners=False)

    def sample(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randperm(count, generator=generator) % num_classes
        pixels = patterns[labels] + noise * torch.randn(count, 3, image_size, image_size,
                                                        generator=generator)
        return (pixels.clamp(0, 1) * 255).round().to(torch.uint8), labels

    train_images, train_labels = sample(num_train)
    test_images, test_labels = sample(num_test)
    scaled = train_images.float() / 255
    mean = tuple(round(v, 4) for v in scaled.mean(dim=(0, 2, 3)).tolist())
    spread = scaled.std(dim=(0, 2, 3), correction=0).clamp_min(1e-3)
    std = tuple(round(v, 4) for v in spread.tolist())
    return ImageDataset(name="synthetic", train_images=train_images, train_labels=train_labels,
                        test_images=test_images, test_labels=test_labels,
                        num_classes=num_classes, mean=mean, std=std)
