"""CIFAR-10/100 from a root folder: our cache, torchvision pickles, an image folder, a download."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import download_and_extract_archive

from tasks.cache import CacheError, load_cache, save_cache
from tasks.cifar_files import CIFAR_SHAPE, find_image_tree, read_cifar_pickles, read_image_folder
from tasks.data import ImageDataset
from tasks.errors import TaskError, one_line


@dataclass(frozen=True)
class CifarSpec:
    """What distinguishes CIFAR-10 from CIFAR-100 on disk and in statistics."""

    title: str
    num_classes: int
    pickle_dir: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    archive: type[CIFAR10]


CIFAR_SPECS = {
    "cifar10": CifarSpec(
        title="CIFAR-10", num_classes=10, pickle_dir="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)), test_files=("test_batch",),
        label_key="labels", mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
        archive=CIFAR10),
    "cifar100": CifarSpec(
        title="CIFAR-100", num_classes=100, pickle_dir="cifar-100-python",
        train_files=("train",), test_files=("test",),
        label_key="fine_labels", mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
        archive=CIFAR100),
}


def cache_path(name: str, root: str | os.PathLike[str]) -> Path:
    """Where load_cifar keeps the decoded uint8 tensors of task `name` under `root`."""
    return Path(root).expanduser() / f"{name}-uint8.pt"


def load_cifar(name: str, *, root: str | os.PathLike[str], download: bool = True) -> ImageDataset:
    """Load 'cifar10' or 'cifar100' from root, decoding once and caching next to the data.

    The cache (root/<name>-uint8.pt) is read first; delete it to decode the source data again.
    """
    spec = CIFAR_SPECS[name]
    root_path = Path(root).expanduser()
    cache = cache_path(name, root_path)
    tensors = None
    if cache.is_file():
        try:
            tensors = load_cache(cache, image_shape=CIFAR_SHAPE)
        except CacheError as err:
            warnings.warn(f"{err}; rebuilding it from the data in {root_path}", stacklevel=2)
    if tensors is None:
        tensors, source = _decode_source(spec, root_path, download=download)
        _write_cache(cache, tensors, source)
    return ImageDataset(name=name, num_classes=spec.num_classes, mean=spec.mean, std=spec.std,
                        **tensors)


def _decode_source(spec: CifarSpec, root: Path, *,
                   download: bool) -> tuple[dict[str, torch.Tensor], str]:
    pickles = root / spec.pickle_dir
    if pickles.is_dir():
        return _read_pickles(spec, pickles), str(pickles)
    tree = find_image_tree(root) if root.is_dir() else None
    if tree is not None:
        return read_image_folder(tree, num_classes=spec.num_classes), str(tree)
    layouts = (f"accepted layouts: {spec.pickle_dir}/ (torchvision pickles), "
               f"train/<class>/*.jpg|png + test/<class>/* in root or in one subdirectory of it")
    if not download:
        raise TaskError(f"no {spec.title} data in {root} and download=False; {layouts}; "
                        f"or pass download=True when online")
    try:
        _download(spec, root)
    except Exception as err:  # network, HTTP and checksum failures all end the same way
        raise TaskError(f"no {spec.title} data in {root} and the download failed "
                        f"({one_line(err)}); {layouts}") from err
    return _read_pickles(spec, pickles), str(pickles)


def _read_pickles(spec: CifarSpec, directory: Path) -> dict[str, torch.Tensor]:
    return read_cifar_pickles(directory, train_files=spec.train_files, test_files=spec.test_files,
                              label_key=spec.label_key)


def _download(spec: CifarSpec, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    archive = spec.archive
    download_and_extract_archive(archive.url, str(root), filename=archive.filename,
                                 md5=archive.tgz_md5)


def _write_cache(cache: Path, tensors: dict[str, torch.Tensor], source: str) -> None:
    try:
        save_cache(cache, tensors, source=source)
    except OSError as err:
        warnings.warn(f"could not write cache {cache} ({one_line(err)}); "
                      f"the next run decodes again", stacklevel=3)
