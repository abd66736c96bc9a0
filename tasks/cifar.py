"""CIFAR-10/100 from a root folder: our cache, torchvision pickles, an image folder, a download."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import download_and_extract_archive

from tasks.cache import CacheError, load_cache, save_cache, source_fingerprint
from tasks.cifar_files import (CIFAR_SHAPE, find_image_tree, read_cifar_pickles, read_image_folder,
                               scan_image_folder)
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


@dataclass(frozen=True)
class _Source:
    """CIFAR data found on disk: where it is, the files it is decoded from, how to decode them."""

    path: Path
    files: tuple[Path, ...]
    decode: Callable[[], dict[str, torch.Tensor]]
    layout: str = ""

    def fingerprint(self, root: Path) -> str:
        """Digest of the source's file paths, sizes and mtimes (and its class layout)."""
        return source_fingerprint(self.files, base=root, layout=self.layout)


def cache_path(name: str, root: str | os.PathLike[str]) -> Path:
    """Where load_cifar keeps the decoded uint8 tensors of task `name` under `root`."""
    return Path(root).expanduser() / f"{name}-uint8.pt"


def load_cifar(name: str, *, root: str | os.PathLike[str], download: bool = True,
               allow_empty_classes: bool = False) -> ImageDataset:
    """Load 'cifar10' or 'cifar100' from root, decoding once and caching next to the data.

    The cache (root/<name>-uint8.pt) is used while the files it was decoded from are unchanged
    (same paths, sizes and mtimes), or alone when root holds no other data; otherwise the source
    is decoded again. An image-folder class without images is an error unless
    `allow_empty_classes`, then a warning.
    """
    spec = CIFAR_SPECS[name]
    root_path = Path(root).expanduser()
    cache = cache_path(name, root_path)
    source = _find_source(spec, root_path, allow_empty_classes=allow_empty_classes)
    digest = None if source is None else source.fingerprint(root_path)
    tensors = _read_cache(cache, digest, root_path) if cache.is_file() else None
    if tensors is None:
        if source is None:
            source = _download_source(spec, root_path, download=download)
        digest = source.fingerprint(root_path) if digest is None else digest  # before decoding
        tensors = source.decode()
        _write_cache(cache, tensors, source, digest)
    return ImageDataset(name=name, num_classes=spec.num_classes, mean=spec.mean, std=spec.std,
                        **tensors)


def _read_cache(cache: Path, digest: str | None, root: Path) -> dict[str, torch.Tensor] | None:
    """The cached tensors if they were decoded from the source whose fingerprint is `digest` (or
    there is no source, `digest` None), else None; an unusable cache file is reported with a
    warning."""
    try:
        tensors, recorded = load_cache(cache, image_shape=CIFAR_SHAPE)
    except CacheError as err:
        warnings.warn(f"{err}; rebuilding it from the data in {root}", stacklevel=3)
        return None
    if digest is not None and recorded != digest:
        return None
    return tensors


def _find_source(spec: CifarSpec, root: Path, *, allow_empty_classes: bool) -> _Source | None:
    """The pickles or image-folder tree in root (pickles first), or None when there is neither."""
    pickles = root / spec.pickle_dir
    if pickles.is_dir():
        return _pickle_source(spec, pickles)
    tree = find_image_tree(root) if root.is_dir() else None
    if tree is None:
        return None
    folder = scan_image_folder(tree, num_classes=spec.num_classes,
                               allow_empty_classes=allow_empty_classes)
    return _Source(path=tree, files=tuple(folder.all_files()),
                   decode=lambda: read_image_folder(folder), layout="\0".join(folder.classes))


def _pickle_source(spec: CifarSpec, directory: Path) -> _Source:
    files = tuple(directory / name for name in (*spec.train_files, *spec.test_files))
    return _Source(path=directory, files=files, decode=lambda: read_cifar_pickles(
        directory, train_files=spec.train_files, test_files=spec.test_files,
        label_key=spec.label_key))


def _download_source(spec: CifarSpec, root: Path, *, download: bool) -> _Source:
    """Download the pickles into root, or explain which layouts root could hold instead."""
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
    return _pickle_source(spec, root / spec.pickle_dir)


def _download(spec: CifarSpec, root: Path) -> None:
    """Download and extract into ``root``; a failed download takes back the folders and the
    partial archive it created, so no empty ``task.root`` is left behind."""
    archive = spec.archive
    made = [folder for folder in (root, *root.parents) if not folder.exists()]  # deepest first
    partial = root / archive.filename
    had_archive = partial.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
        download_and_extract_archive(archive.url, str(root), filename=archive.filename,
                                     md5=archive.tgz_md5)
    except BaseException:
        if not had_archive:
            partial.unlink(missing_ok=True)
        for folder in made:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def _write_cache(cache: Path, tensors: dict[str, torch.Tensor], source: _Source,
                 digest: str) -> None:
    try:
        save_cache(cache, tensors, source=str(source.path), fingerprint=digest)
    except OSError as err:
        warnings.warn(f"could not write cache {cache} ({one_line(err)}); "
                      f"the next run decodes again", stacklevel=3)
