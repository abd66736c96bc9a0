"""Decoded-image cache: uint8 tensors saved once with torch.save, loaded with weights_only=True."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from tasks.errors import TaskError, one_line

CACHE_VERSION = 1
_TENSOR_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


class CacheError(TaskError):
    """A cache file exists but cannot be used."""


def save_cache(path: Path, tensors: dict[str, torch.Tensor], *, source: str) -> None:
    """Write the four split tensors to `path` atomically (temp file in the same dir, os.replace)."""
    payload: dict[str, object] = {"version": CACHE_VERSION, "source": source}
    payload.update({key: tensors[key].contiguous() for key in _TENSOR_KEYS})
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_cache(path: Path, *, image_shape: tuple[int, int, int]) -> dict[str, torch.Tensor]:
    """Read and validate a cache file; raise CacheError naming the file if it is unusable."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling/zip/IO failure means the file is unusable
        raise CacheError(f"cache file {path} is unreadable ({one_line(err)})") from err
    if not isinstance(payload, dict) or payload.get("version") != CACHE_VERSION:
        raise CacheError(f"cache file {path} has an unknown format")
    for split in ("train", "test"):
        images, labels = payload.get(f"{split}_images"), payload.get(f"{split}_labels")
        if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8
                and tuple(images.shape[1:]) == image_shape):
            shape = ", ".join(map(str, image_shape))
            raise CacheError(f"cache file {path}: {split}_images is not uint8 [N, {shape}]")
        if not (isinstance(labels, torch.Tensor) and labels.dtype == torch.int64
                and labels.shape == images.shape[:1]):
            raise CacheError(f"cache file {path}: {split}_labels does not match {split}_images")
    return {key: payload[key] for key in _TENSOR_KEYS}
