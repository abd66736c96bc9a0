"""Images read from their files on demand: decoding, lazy file lists and a resumable loader.

:class:`FileImages` stands in for a uint8 [N, 3, S, S] tensor whose images are decoded from their
files when a batch is read. :func:`make_stream_loader` reads batches in the order of the in-memory
path's :class:`~tasks.loader.ShuffledBatchSampler`, decoding them in DataLoader worker processes;
its position (``state_dict``) counts the batches handed out, not the ones its workers prefetched.
A file that cannot be read or decoded is left out of its batch and named in one warning line (the
first few files; then a count).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

from tasks.errors import TaskError
from tasks.loader import ResumableLoader, ShuffledBatchSampler

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
NAMED_BAD_FILES = 5  # unreadable files named one by one; later ones are counted
LOG = logging.getLogger(__name__)


def decode_file(path: str, size: int) -> torch.Tensor | None:
    """The image at ``path`` as uint8 [3, size, size]: RGB (grayscale and palette images
    converted), shorter side resized to ``size`` (antialiased), centre-cropped; None when the
    file cannot be read or decoded."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8),
                             mode=ImageReadMode.RGB)
    except (OSError, RuntimeError, ValueError):
        return None
    if image.dtype != torch.uint8:  # 16-bit PNG
        image = TF.to_dtype(image, torch.uint8, scale=True)
    image = TF.resize(image, [size], antialias=True)
    return TF.center_crop(image, [size, size])


class FileImages:
    """Image files standing in for a uint8 [N, 3, size, size] tensor: indexing with an index
    tensor gives the files it selects (nothing decoded); :meth:`read` decodes a batch.

    ``workers`` is the number of DataLoader processes that decode batches of these files.
    """

    def __init__(self, paths: Sequence[str], size: int, *, workers: int = 0) -> None:
        if size < 1 or workers < 0:
            raise TaskError(f"image size must be >= 1 and workers >= 0, got {size} and {workers}")
        self.paths = tuple(paths)
        self.size = size
        self.workers = workers

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(N, 3, size, size), as the decoded tensor would be."""
        return len(self.paths), 3, self.size, self.size

    def __getitem__(self, indices: torch.Tensor) -> FileImages:
        return FileImages([self.paths[i] for i in indices.tolist()], self.size,
                          workers=self.workers)

    def read(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
        """Decode the images at ``indices``: (uint8 [k, 3, S, S] of the good ones, bool mask of
        the good ones over ``indices``, the paths that could not be decoded)."""
        decoded = [decode_file(self.paths[i], self.size) for i in indices.tolist()]
        good = torch.tensor([image is not None for image in decoded], dtype=torch.bool)
        kept = [image for image in decoded if image is not None]
        images = (torch.stack(kept) if kept
                  else torch.empty((0, 3, self.size, self.size), dtype=torch.uint8))
        bad = tuple(self.paths[i] for i, image in zip(indices.tolist(), decoded) if image is None)
        return images, good, bad


class BadFileReport:
    """Logs one warning line per unreadable file for the first :data:`NAMED_BAD_FILES` of them;
    the others are counted and reported by :meth:`flush`."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.unnamed = 0

    def add(self, paths: Sequence[str]) -> None:
        """Report the files in ``paths`` not reported before."""
        for path in paths:
            if path in self.seen:
                continue
            self.seen.add(path)
            if len(self.seen) <= NAMED_BAD_FILES:
                LOG.warning("warning: skipping image %s: it cannot be read or is not a "
                            "JPEG/PNG/WebP file", path)
            else:
                self.unnamed += 1

    def flush(self) -> None:
        """Log how many further unreadable files were skipped since the last flush."""
        if self.unnamed:
            LOG.warning("warning: skipped %d more unreadable image(s)", self.unnamed)
            self.unnamed = 0


class FileBatchDataset(Dataset[tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]]):
    """Indexing with an index tensor decodes that batch: (images, labels, unreadable paths)."""

    def __init__(self, images: FileImages, labels: torch.Tensor) -> None:
        if len(images) != len(labels):
            raise TaskError(f"{len(images)} image files but {len(labels)} labels")
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor,
                                                        tuple[str, ...]]:
        images, good, bad = self.images.read(index)
        return images, self.labels[index][good], bad


class StreamingLoader(ResumableLoader):
    """A :class:`ResumableLoader` whose workers decode files; yields (images, labels) pairs and
    reports unreadable files. Its position is the number of batches it has yielded."""

    def __init__(self, dataset: FileBatchDataset, sampler: ShuffledBatchSampler, workers: int,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(dataset, batch_size=None, sampler=sampler, num_workers=workers,
                         collate_fn=_as_is, generator=generator)
        self.report = BadFileReport()
        self._yielded = 0
        self._resume_at = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # type: ignore[override]
        self._yielded, self._resume_at = self._resume_at, 0
        for images, labels, bad in super().__iter__():
            self.report.add(bad)
            self._yielded += 1
            yield images, labels
        self.report.flush()

    def state_dict(self) -> dict[str, int]:
        """The epoch and the number of batches this iteration has yielded."""
        return {"epoch": self.sampler.epoch, "batches": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue at the batch after ``state``'s."""
        self.sampler.load_state_dict(state)
        self._resume_at = int(state["batches"])


def _as_is(batch: object) -> object:
    return batch


def make_stream_loader(images: FileImages, labels: torch.Tensor, *, batch_size: int,
                       shuffle: bool, seed: int, drop_last: bool, reshuffle: bool = True,
                       generator: torch.Generator | None = None) -> StreamingLoader:
    """Like :func:`tasks.loader.make_loader` (the same batches in the same order), decoding each
    batch from its files in one of ``images.workers`` worker processes.

    Each pass draws its workers' base seed from ``generator``, or, like every DataLoader, from
    torch's global generator when it is None.
    """
    sampler = ShuffledBatchSampler(len(labels), batch_size, shuffle=shuffle, seed=seed,
                                   drop_last=drop_last, reshuffle=reshuffle)
    return StreamingLoader(FileBatchDataset(images, labels), sampler, images.workers, generator)


def default_workers() -> int:
    """Decoding processes: the cores this process may use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))
