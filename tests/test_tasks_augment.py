"""Batched augmentation ops: crop windows, flips, cutout squares, normalization, determinism."""

from __future__ import annotations

import pytest
import torch

from tasks import TaskError
from tasks.augment import (BatchAugment, cutout, eval_transform, normalize, random_crop,
                           random_flip, to_float)


def _batch(n: int = 16, size: int = 8) -> torch.Tensor:
    return torch.randint(1, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(0),
                         dtype=torch.int64).to(torch.uint8)


def test_crop_is_a_window_of_the_padded_input() -> None:
    x, padding = _batch(), 2
    out = random_crop(x, padding, generator=torch.Generator().manual_seed(1))
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    offsets = set()
    for i in range(len(x)):
        matches = [(dy, dx) for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
                   if torch.equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 3
    again = random_crop(x, padding, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again) and out.dtype == torch.uint8


def test_crop_known_offset_for_single_image() -> None:
    x = _batch(1)
    out = random_crop(x, 4, generator=torch.Generator().manual_seed(5))
    dy, dx = torch.randint(0, 9, (2, 1, 1), generator=torch.Generator().manual_seed(5)).flatten()
    padded = torch.nn.functional.pad(x, (4,) * 4)
    assert torch.equal(out, padded[:, :, dy:dy + 8, dx:dx + 8])


def test_crop_without_padding_is_identity() -> None:
    x = _batch()
    assert torch.equal(random_crop(x, 0), x)


def test_flip_mirrors_some_images() -> None:
    x = _batch(32)
    out = random_flip(x, generator=torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(32)]
    kept = [torch.equal(out[i], x[i]) for i in range(32)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 4 < sum(flipped) < 28
    assert torch.equal(random_flip(x, p=1.0), x.flip(-1)) and torch.equal(random_flip(x, p=0.0), x)


def test_cutout_zeroes_a_square_of_the_given_size() -> None:
    x = torch.ones(64, 3, 32, 32)
    out = cutout(x, 8, generator=torch.Generator().manual_seed(0))
    full_squares = 0
    for image in out:
        assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])
        rows, cols = torch.nonzero(image[0] == 0, as_tuple=True)
        height = int(rows.max() - rows.min() + 1)
        width = int(cols.max() - cols.min() + 1)
        assert len(rows) == height * width and height <= 8 and width <= 8
        inside = rows.min() > 0 and cols.min() > 0 and rows.max() < 31 and cols.max() < 31
        if inside:
            assert (height, width) == (8, 8)
            full_squares += 1
    assert full_squares > 10
    assert torch.equal(cutout(x, 0), x)


def test_normalize_math_and_uint8_scaling() -> None:
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    out = normalize(x, (0.0, 0.1, 0.5), (1.0, 0.5, 0.25))
    assert torch.allclose(out.flatten(), torch.tensor([0.0, (0.2 - 0.1) / 0.5, 2.0]))
    assert torch.equal(eval_transform((0.0, 0.1, 0.5), (1.0, 0.5, 0.25))(x), out)
    assert to_float(x).dtype == torch.float32 and to_float(out) is out


def test_batch_augment_pipeline() -> None:
    x = _batch(8, 32)
    augment = BatchAugment((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), cutout=16)
    first = augment(x, generator=torch.Generator().manual_seed(3))
    second = augment(x, generator=torch.Generator().manual_seed(3))
    assert first.shape == (8, 3, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, second)
    assert ((first == 0).all(dim=1).sum(dim=(1, 2)) >= 64).all()
    plain = BatchAugment((0.5,) * 3, (0.25,) * 3, crop_padding=0, flip=False)(x)
    assert torch.allclose(plain, (x.float() / 255 - 0.5) / 0.25)


def test_global_rng_is_used_without_generator() -> None:
    x = _batch(32, 32)
    augment = BatchAugment((0.5,) * 3, (0.25,) * 3, cutout=8)
    torch.manual_seed(11)
    first = augment(x)
    torch.manual_seed(11)
    assert torch.equal(first, augment(x))


@pytest.mark.parametrize("kwargs", [{"crop_padding": -1}, {"cutout": -2}])
def test_invalid_settings(kwargs: dict[str, int]) -> None:
    with pytest.raises(TaskError, match="must be non-negative"):
        BatchAugment((0.5,), (0.5,), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(TaskError, match="std > 0"):
        eval_transform((0.5, 0.5), (0.5, 0.0))
