"""Any image classification data laid out as class folders: ``task=imagefolder task.root=DIR``.

Accepted layouts: ``DIR/train/<class>/*`` with ``DIR/test/<class>/*`` or ``DIR/val/<class>/*``; or
``DIR/train/<class>/*`` alone, or ``DIR/<class>/*`` alone, whose images are split into a training
set and a seeded, stratified held-out test set. Images (JPEG, PNG, WebP; grayscale and palette
converted to RGB) are resized to ``image_size`` on their shorter side and centre-cropped square.

Data whose decoded size fits the memory budget is decoded once (in worker processes, with a
progress bar for a large folder) into a uint8 cache next to the data and held in memory; larger
data is decoded batch by batch while training (see :mod:`tasks.streaming`). The channel mean and
std come from a seeded sample of the training images (cached) unless given.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from tasks.cache import CacheError, load_cache, save_cache, source_fingerprint
from tasks.data import ImageDataset
from tasks.errors import TaskError, one_line
from tasks.seeding import seeded_generator
from tasks.streaming import IMAGE_SUFFIXES, FileImages, default_workers, make_stream_loader

TRAIN_CROPS = ("pad", "random_resized")
TEST_FOLDERS = ("test", "val")
MEMORY_FRACTION = 0.5  # of the available memory, when no memory budget is given
STATS_IMAGES = 5000  # training images sampled for the mean and std
CHUNK = 64  # images per decoding job
PROGRESS_FROM = 2000  # folders with fewer images decode without a progress bar


@dataclass(frozen=True)
class FolderLayout:
    """The classes of a folder (sorted names) and its (file, label) pairs per split."""

    root: Path
    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    test: tuple[tuple[str, int], ...]
    held_out: bool  # the test set was split off the training images

    def fingerprint(self) -> str:
        """Digest of the class names, the split and every file's path, size and mtime."""
        files = [Path(path) for path, _ in (*self.train, *self.test)]
        layout = "\0".join([*self.classes, str(len(self.train))])
        return source_fingerprint(files, base=self.root, layout=layout)


def scan_folder(root: Path, *, test_fraction: float, split_seed: int) -> FolderLayout:
    """List the images of ``root`` per class without decoding them (see the module docstring)."""
    if not root.is_dir():
        raise TaskError(f"task.root {root} is not a folder; pass task.root=DIR with class folders")
    train_dir = root / "train" if (root / "train").is_dir() else root
    classes = _class_folders(train_dir)
    if not classes:
        raise TaskError(f"no class folders in {train_dir}; expected {root}/<class>/*.jpg or "
                        f"{root}/train/<class>/*.jpg")
    labels = {name: label for label, name in enumerate(classes)}
    train = _list_split(train_dir, classes, labels)
    test_dir = next((root / name for name in TEST_FOLDERS
                     if train_dir != root and (root / name).is_dir()), None)
    if test_dir is None:
        train, test = _held_out(train, len(classes), test_fraction, split_seed)
    else:
        extra = sorted(set(_class_folders(test_dir)) - set(classes))
        if extra:
            raise TaskError(f"class folder(s) of {test_dir} not in {train_dir}: {', '.join(extra)}")
        test = _list_split(test_dir, tuple(_class_folders(test_dir)), labels)
    return FolderLayout(root=root, classes=classes, train=train, test=test,
                        held_out=test_dir is None)


def _class_folders(directory: Path) -> tuple[str, ...]:
    return tuple(sorted(entry.name for entry in os.scandir(directory)
                        if entry.is_dir() and not entry.name.startswith(".")))


def _list_split(directory: Path, classes: Sequence[str],
                labels: dict[str, int]) -> tuple[tuple[str, int], ...]:
    pairs: list[tuple[str, int]] = []
    for name in classes:
        files = sorted(entry.path for entry in os.scandir(directory / name)
                       if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file())
        if not files:
            raise TaskError(f"class folder {directory / name} holds no "
                            f"{'/'.join(IMAGE_SUFFIXES)} images; add some or remove the folder")
        pairs.extend((path, labels[name]) for path in files)
    return tuple(pairs)


def _held_out(pairs: tuple[tuple[str, int], ...], num_classes: int, fraction: float,
              seed: int) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]:
    """Split off round(fraction * n) seeded images of each class (at least one of a class with
    two or more, never all of them)."""
    if not 0 < fraction < 1:
        raise TaskError(f"test_fraction must lie in (0, 1), got {fraction}")
    members: list[list[tuple[str, int]]] = [[] for _ in range(num_classes)]
    for pair in pairs:
        members[pair[1]].append(pair)
    train: list[tuple[str, int]] = []
    test: list[tuple[str, int]] = []
    for label, group in enumerate(members):
        count = min(max(round(fraction * len(group)), 1), len(group) - 1)
        chosen = set(torch.randperm(len(group), generator=seeded_generator(seed, label))
                     [:count].tolist())
        for index, pair in enumerate(group):
            (test if index in chosen else train).append(pair)
    return tuple(train), tuple(test)


def load_imagefolder(root: str | os.PathLike[str] | None, *, image_size: int = 32,
                     train_crop: str = "pad", test_fraction: float = 0.1, split_seed: int = 0,
                     mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                     memory_budget_gb: float | None = None, workers: int | None = None,
                     cache_dir: str | os.PathLike[str] | None = None) -> ImageDataset:
    """Load the class folders under ``root`` (see the module docstring).

    ``train_crop`` is the training crop: ``pad`` (pad by image_size/8 and crop at a random
    offset, as for CIFAR) or ``random_resized`` (a random 8-100% area, 3/4-4/3 aspect crop
    resized back to image_size). ``memory_budget_gb`` (default: half the available memory)
    decides between holding the decoded images in memory and decoding them while training;
    ``workers`` decoding processes (default: the usable cores, at most 8); the cache files go to
    ``cache_dir`` (default: root).
    """
    if root is None:
        raise TaskError("task=imagefolder needs task.root=DIR (a folder of class folders)")
    if train_crop not in TRAIN_CROPS:
        raise TaskError(f"train_crop must be one of {', '.join(TRAIN_CROPS)}, got {train_crop!r}")
    if (mean is None) != (std is None):
        raise TaskError("give both task.mean and task.std (3 values each), or neither")
    if image_size < 1:
        raise TaskError(f"image_size must be >= 1, got {image_size}")
    root_path = Path(root).expanduser()
    layout = scan_folder(root_path, test_fraction=test_fraction, split_seed=split_seed)
    workers = default_workers() if workers is None else workers
    files = {split: (FileImages([path for path, _ in pairs], image_size, workers=workers),
                     torch.tensor([label for _, label in pairs], dtype=torch.int64))
             for split, pairs in (("train", layout.train), ("test", layout.test))}
    stem = Path(cache_dir).expanduser() if cache_dir is not None else root_path
    stem = stem / f"imagefolder-{image_size}px"
    digest = layout.fingerprint()
    needed = sum(len(labels) for _, labels in files.values()) * 3 * image_size * image_size
    if needed <= _budget(memory_budget_gb):
        splits = _in_memory(stem.with_name(stem.name + "-uint8.pt"), files, digest, root_path)
    else:
        splits = dict(files)
    if mean is None or std is None:
        mean, std = _statistics(stem.with_name(stem.name + "-stats.json"), *splits["train"],
                                digest)
    return ImageDataset(name="imagefolder", num_classes=len(layout.classes), mean=tuple(mean),
                        std=tuple(std), class_names=layout.classes,
                        crop_padding=image_size // 8 if train_crop == "pad" else 0,
                        random_resized_crop=train_crop == "random_resized",
                        train_images=splits["train"][0], train_labels=splits["train"][1],
                        test_images=splits["test"][0], test_labels=splits["test"][1])


def _budget(gigabytes: float | None) -> float:
    """The memory budget in bytes: ``gigabytes`` GiB, or a fraction of the available memory."""
    if gigabytes is not None:
        if gigabytes < 0:
            raise TaskError(f"memory_budget_gb must be >= 0, got {gigabytes}")
        return gigabytes * 2**30
    return MEMORY_FRACTION * available_memory()


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable on Linux, else free pages)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


Split = tuple[torch.Tensor | FileImages, torch.Tensor]


def _in_memory(cache: Path, files: dict[str, tuple[FileImages, torch.Tensor]], digest: str,
               root: Path) -> dict[str, Split]:
    """Each split's decoded images and labels: from ``cache`` when it was made from these files,
    else decoded now (unreadable files warned about and left out) and cached."""
    if cache.is_file():
        try:
            tensors, recorded = load_cache(cache, image_shape=files["train"][0].shape[1:])
        except CacheError as err:
            warnings.warn(f"{err}; rebuilding it from the images in {root}", stacklevel=3)
        else:
            if recorded == digest:
                return {split: (tensors[f"{split}_images"], tensors[f"{split}_labels"])
                        for split in files}
    splits: dict[str, Split] = {split: decode_all(images, labels, desc=f"decoding {split} images")
                                for split, (images, labels) in files.items()}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_cache(cache, {f"{split}_{kind}": value for split, pair in splits.items()
                           for kind, value in zip(("images", "labels"), pair)},
                   source=str(root), fingerprint=digest)
    except OSError as err:
        warnings.warn(f"could not write cache {cache} ({one_line(err)}); the next run decodes "
                      f"again (set task.cache_dir to a writable folder)", stacklevel=3)
    return splits


def decode_all(images: FileImages, labels: torch.Tensor, *,
               desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every file of ``images`` in order with its workers: (uint8 images, their labels),
    unreadable files left out; a progress bar on a terminal for a large folder."""
    out = torch.empty(images.shape, dtype=torch.uint8)
    kept = torch.empty(len(images), dtype=torch.int64)
    count = 0
    for batch, batch_labels in decoded_batches(images, labels, desc=desc):
        out[count:count + len(batch)] = batch
        kept[count:count + len(batch)] = batch_labels
        count += len(batch)
    if count < len(images):
        return out[:count].clone(), kept[:count].clone()
    return out, kept


def decoded_batches(images: FileImages, labels: torch.Tensor, *,
                    desc: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The files of ``images`` decoded in order, in batches of :data:`CHUNK` (unreadable files
    left out), by its workers; a progress bar on a terminal for a large folder. No file at all
    decoding is an error. Torch's global generator is left alone, so whether the data had to be
    decoded (or was cached) does not change a run's seeded weight initialization."""
    loader = make_stream_loader(images, labels, batch_size=CHUNK, shuffle=False, seed=0,
                                drop_last=False, generator=torch.Generator())
    decoded = 0
    with tqdm(total=len(images), desc=desc, unit="img", leave=False,
              disable=None if len(images) >= PROGRESS_FROM else True) as bar:
        for index, (batch, batch_labels) in enumerate(loader):
            decoded += len(batch)
            bar.update(min(CHUNK, len(images) - index * CHUNK))
            yield batch, batch_labels
    if decoded == 0 and len(images):
        raise TaskError(f"none of the {len(images)} images could be decoded (e.g. "
                        f"{images.paths[0]}); check that they are JPEG, PNG or WebP files")


def _statistics(path: Path, images: torch.Tensor | FileImages, labels: torch.Tensor,
                digest: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of a seeded sample of the training images (cached in ``path``
    with the fingerprint of the files they were computed from)."""
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
        if recorded.get("fingerprint") == digest:
            return tuple(recorded["mean"]), tuple(recorded["std"])
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        pass  # no usable cached statistics: compute them
    sample = torch.randperm(len(labels), generator=seeded_generator(0))[:STATS_IMAGES]
    sample = sample.sort().values
    if isinstance(images, FileImages):
        batches = (batch for batch, _ in decoded_batches(images[sample], labels[sample],
                                                         desc="mean and std"))
    else:
        batches = (images[sample[i:i + CHUNK]] for i in range(0, len(sample), CHUNK))
    mean, std = channel_statistics(batches)
    _write_json(path, {"fingerprint": digest, "mean": list(mean), "std": list(std)})
    return mean, std


def channel_statistics(batches: Iterable[torch.Tensor]) -> tuple[tuple[float, ...],
                                                                 tuple[float, ...]]:
    """Mean and (population) std per channel, in [0, 1] units, over all pixels of the uint8
    batches; exact sums, so the result does not depend on how the images are batched."""
    total = squares = None
    pixels = 0
    for batch in batches:
        values = batch.to(torch.int64).transpose(0, 1).flatten(1)
        sums, sq = values.sum(1), (values * values).sum(1)
        total = sums if total is None else total + sums
        squares = sq if squares is None else squares + sq
        pixels += values.shape[1]
    if total is None or squares is None or pixels == 0:
        raise TaskError("no training images to compute the mean and std from")
    mean = total.double() / pixels
    var = (squares.double() / pixels - mean * mean).clamp_min(0)
    std = var.sqrt().clamp_min(1.0)  # a constant channel still divides by a positive std
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())


def _write_json(path: Path, document: dict[str, object]) -> None:
    """Write ``document`` atomically; a folder we cannot write to only costs recomputing."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(document) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
