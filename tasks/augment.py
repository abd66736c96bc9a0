"""Batched, on-device image augmentation: crop, flip, normalize and cutout without per-image loops.

Random numbers come from torch's global RNG on the batch's device, or from `generator` (which
must live on that device).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from tasks.errors import TaskError


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; floating batches are returned unchanged."""
    return x if x.is_floating_point() else x.to(torch.float32).div_(255)


def random_crop(x: torch.Tensor, padding: int, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad each side by `padding`, then cut an HxW window at a random offset per image."""
    if padding == 0:
        return x
    n, channels, height, width = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, n, 1), device=x.device, generator=generator)
    rows = offsets[0] + torch.arange(height, device=x.device)
    cols = offsets[1] + torch.arange(width, device=x.device)
    rows = rows.view(n, 1, height, 1).expand(n, channels, height, padded.shape[3])
    band = padded.gather(2, rows)
    return band.gather(3, cols.view(n, 1, 1, width).expand(n, channels, height, width))


def random_flip(x: torch.Tensor, p: float = 0.5, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability p."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < p
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def random_resized_crop(x: torch.Tensor, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), *,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Cut from each image a window of random area (a ``scale`` fraction) and aspect ratio
    (log-uniform in ``ratio``) at a random place, and resize it back to HxW (bilinear); returns
    float [0, 1]. A window wider or taller than the image is clipped to it."""
    x = to_float(x)
    n = x.shape[0]
    draws = torch.rand(4, n, device=x.device, generator=generator)
    area = scale[0] + (scale[1] - scale[0]) * draws[0]
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_low + (log_high - log_low) * draws[1])
    width = torch.sqrt(area * aspect).clamp(max=1.0)  # fractions of the image's sides
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = width, height
    theta[:, 0, 2] = (1 - width) * (2 * draws[2] - 1)  # centre, in [-1, 1] grid units
    theta[:, 1, 2] = (1 - height) * (2 * draws[3] - 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x - mean) / std per channel; uint8 input is first scaled to [0, 1]."""
    x = to_float(x)
    shape = (1, -1, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - mean_t) / std_t


def cutout(x: torch.Tensor, length: int, *,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a length x length square (clipped at the border) at a random centre in each image."""
    if length == 0:
        return x
    n, _, height, width = x.shape
    rows = torch.randint(0, height, (n, 1), device=x.device, generator=generator)
    cols = torch.randint(0, width, (n, 1), device=x.device, generator=generator)
    half = length // 2
    row_in = _within(torch.arange(height, device=x.device), rows - half, rows + length - half)
    col_in = _within(torch.arange(width, device=x.device), cols - half, cols + length - half)
    hole = row_in.unsqueeze(2) & col_in.unsqueeze(1)
    return x.masked_fill(hole.unsqueeze(1), 0)


def _within(positions: torch.Tensor, start: torch.Tensor, stop: torch.Tensor) -> torch.Tensor:
    return (positions >= start) & (positions < stop)


class BatchAugment:
    """DARTS training transform for a uint8 batch: crop, flip, normalize, then cutout.

    The crop pads by ``crop_padding`` and cuts at a random offset; with ``random_resized``, it
    is a :func:`random_resized_crop` instead (ImageNet style).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], *, crop_padding: int = 4,
                 flip: bool = True, cutout: int = 0, random_resized: bool = False) -> None:
        _check_stats(mean, std)
        if crop_padding < 0 or cutout < 0:
            raise TaskError(f"crop_padding and cutout must be non-negative, "
                            f"got {crop_padding} and {cutout}")
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.crop_padding = crop_padding
        self.flip = flip
        self.cutout = cutout
        self.random_resized = random_resized

    def __call__(self, x: torch.Tensor, *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        if self.random_resized:
            x = random_resized_crop(x, generator=generator)
        x = random_crop(x, self.crop_padding, generator=generator)
        if self.flip:
            x = random_flip(x, generator=generator)
        x = normalize(x, self.mean, self.std)
        return cutout(x, self.cutout, generator=generator)


def eval_transform(mean: Sequence[float],
                   std: Sequence[float]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The evaluation transform: normalization only."""
    _check_stats(mean, std)
    return partial(normalize, mean=tuple(mean), std=tuple(std))


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> None:
    if len(mean) != len(std) or not all(s > 0 for s in std):
        raise TaskError(f"mean and std need one value per channel and std > 0, "
                        f"got {mean} and {std}")
