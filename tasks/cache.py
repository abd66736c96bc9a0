"""Decoded-image cache: uint8 tensors saved once with torch.save, loaded with weights_only=True.

The cache records a fingerprint of the files it was decoded from (their paths, sizes and
modification times), so a cache whose source files changed since is recognised and rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

import torch

from tasks.errors import TaskError, one_line

CACHE_VERSION = 2
_TENSOR_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


class CacheError(TaskError):
    """A cache file exists but cannot be used."""


def source_fingerprint(files: Iterable[Path], *, base: Path, layout: str = "") -> str:
    """A digest of `layout` and each file's path (relative to `base`), size and mtime."""
    digest = hashlib.sha256(layout.encode())
    for path in files:
        try:
            stat = path.stat()
            entry = f"{path.relative_to(base)}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
        except FileNotFoundError:
            entry = f"{path.relative_to(base)}\0missing\n"
        digest.update(entry.encode())
    return digest.hexdigest()


def save_cache(path: Path, tensors: dict[str, torch.Tensor], *, source: str,
               fingerprint: str) -> None:
    """Write the four split tensors to `path` atomically (temp file in the same dir, os.replace),
    with the source they were decoded from and its fingerprint; the file gets ``0o666`` less the
    umask, like every file oneshot writes."""
    payload: dict[str, object] = {"version": CACHE_VERSION, "source": source,
                                  "fingerprint": fingerprint}
    payload.update({key: tensors[key].contiguous() for key in _TENSOR_KEYS})
    # Not oneshot.storage.files.write_atomic: tasks cannot depend on oneshot, and torch.save streams the
    # large cache to the file instead of holding all its bytes in memory first.
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_cache(path: Path, *,
               image_shape: tuple[int, int, int]) -> tuple[dict[str, torch.Tensor], str]:
    """Read and validate a cache file: its four tensors and its source fingerprint; raise
    CacheError naming the file if it is unusable."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling/zip/IO failure means the file is unusable
        raise CacheError(f"cache file {path} is unreadable ({one_line(err)})") from err
    if not isinstance(payload, dict) or payload.get("version") != CACHE_VERSION:
        raise CacheError(f"cache file {path} has an unknown format (an older oneshot's?)")
    if not isinstance(payload.get("fingerprint"), str):
        raise CacheError(f"cache file {path} does not record its source files")
    for split in ("train", "test"):
        images, labels = payload.get(f"{split}_images"), payload.get(f"{split}_labels")
        if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8
                and tuple(images.shape[1:]) == image_shape):
            shape = ", ".join(map(str, image_shape))
            raise CacheError(f"cache file {path}: {split}_images is not uint8 [N, {shape}]")
        if not (isinstance(labels, torch.Tensor) and labels.dtype == torch.int64
                and labels.shape == images.shape[:1]):
            raise CacheError(f"cache file {path}: {split}_labels does not match {split}_images")
    return {key: payload[key] for key in _TENSOR_KEYS}, payload["fingerprint"]
