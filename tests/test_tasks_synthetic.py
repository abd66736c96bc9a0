"""The synthetic task: shapes, determinism, balance and learnable labels."""

from __future__ import annotations

import pytest
import torch

from tasks import TaskError, load_task
from tasks.synthetic import make_synthetic


def test_default_shapes_and_stats() -> None:
    data = make_synthetic()
    assert data.name == "synthetic" and data.num_classes == 10
    assert data.train_images.shape == (512, 3, 32, 32)
    assert data.test_images.shape == (256, 3, 32, 32)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert data.image_shape == (3, 32, 32)
    scaled = data.train_images.float() / 255
    assert torch.allclose(torch.tensor(data.mean), scaled.mean(dim=(0, 2, 3)), atol=1e-4)
    assert torch.allclose(torch.tensor(data.std), scaled.std(dim=(0, 2, 3)), atol=1e-3)


def test_configurable_and_balanced() -> None:
    data = load_task("synthetic", num_train=60, num_test=30, num_classes=3, image_size=8, seed=1)
    assert data.train_images.shape == (60, 3, 8, 8) and data.test_images.shape == (30, 3, 8, 8)
    assert data.train_labels.bincount().tolist() == [20, 20, 20]


def test_deterministic_given_seed() -> None:
    a, b, c = make_synthetic(seed=3), make_synthetic(seed=3), make_synthetic(seed=4)
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images, c.train_images)


def test_labels_are_learnable() -> None:
    data = make_synthetic(seed=0)
    features = data.train_images.float().flatten(1)
    centroids = torch.stack([features[data.train_labels == k].mean(0) for k in range(10)])
    predicted = torch.cdist(data.test_images.float().flatten(1), centroids).argmin(1)
    assert (predicted == data.test_labels).float().mean() > 0.9


@pytest.mark.parametrize("option", [{"num_train": 0}, {"num_classes": 1}, {"image_size": 0},
                                    {"noise": -1.0}])
def test_invalid_options(option: dict[str, float]) -> None:
    with pytest.raises(TaskError, match=f"synthetic: {next(iter(option))}"):
        make_synthetic(**option)  # type: ignore[arg-type]
