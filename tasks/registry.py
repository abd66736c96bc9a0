"""Task names and the single entry point that loads a task by name."""

from __future__ import annotations

import inspect
import os
from typing import Callable

from tasks.cifar import CIFAR_SPECS, load_cifar
from tasks.data import ImageDataset
from tasks.errors import TaskError
from tasks.imagefolder import load_imagefolder
from tasks.imagenet16 import load_imagenet16
from tasks.synthetic import make_synthetic

_SYNTHETIC_OPTIONS = tuple(inspect.signature(make_synthetic).parameters)
_CIFAR_OPTIONS = ("allow_empty_classes",)
_FOLDER_LOADERS: dict[str, Callable[..., ImageDataset]] = {
    "imagefolder": load_imagefolder, "imagenet16": load_imagenet16}


def list_tasks() -> list[str]:
    """Names accepted by load_task."""
    return [*CIFAR_SPECS, *_FOLDER_LOADERS, "synthetic"]


def load_task(name: str, *, root: str | os.PathLike[str] | None = None, download: bool = True,
              **kwargs: object) -> ImageDataset:
    """Load task `name`; CIFAR tasks read (or download into) `root` and take allow_empty_classes,
    imagefolder and imagenet16 read `root` and take their loader's options, synthetic takes its
    own options."""
    if name in _FOLDER_LOADERS:
        loader = _FOLDER_LOADERS[name]
        options = tuple(inspect.signature(loader).parameters)[1:]
        unknown = sorted(set(kwargs) - set(options))
        if unknown:
            raise TaskError(f"unknown option(s) for task {name!r}: {', '.join(unknown)}; "
                            f"choose from: root, {', '.join(options)}")
        return loader(root, **kwargs)
    if name == "synthetic":
        unknown = sorted(set(kwargs) - set(_SYNTHETIC_OPTIONS))
        if unknown:
            raise TaskError(f"unknown option(s) for task 'synthetic': {', '.join(unknown)}; "
                            f"choose from: {', '.join(_SYNTHETIC_OPTIONS)}")
        return make_synthetic(**kwargs)  # type: ignore[arg-type]
    if name not in CIFAR_SPECS:
        raise TaskError(f"unknown task {name!r}; choose one of: {', '.join(list_tasks())}")
    unknown = sorted(set(kwargs) - set(_CIFAR_OPTIONS))
    if unknown:
        raise TaskError(f"task {name!r} takes no options besides root, download and "
                        f"{', '.join(_CIFAR_OPTIONS)}; got: {', '.join(unknown)}")
    if root is None:
        raise TaskError(f"task {name!r} needs root=<folder with the data or to download into>")
    allow = kwargs.get("allow_empty_classes", False)
    if not isinstance(allow, bool):
        raise TaskError(f"allow_empty_classes must be true or false, got {allow!r}")
    return load_cifar(name, root=root, download=download, **kwargs)  # type: ignore[arg-type]
