"""Decoders for the CIFAR layouts found on disk: torchvision pickles and image-folder trees."""

from __future__ import annotations

import codecs
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image

from tasks.errors import TaskError, one_line

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CIFAR_SHAPE = (3, 32, 32)
SPLITS = ("train", "test")

_RECONSTRUCT = np.empty(0).__reduce__()[0]
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays (CIFAR and ImageNet16 pickles need nothing else)."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"unexpected global {module}.{name}") from None


def read_cifar_pickles(directory: Path, *, train_files: tuple[str, ...],
                       test_files: tuple[str, ...], label_key: str) -> dict[str, torch.Tensor]:
    """Read torchvision's extracted CIFAR pickles (e.g. cifar-10-batches-py) into uint8 tensors."""
    tensors: dict[str, torch.Tensor] = {}
    for split, names in (("train", train_files), ("test", test_files)):
        batches = [_read_pickle(directory / name, label_key) for name in names]
        tensors[f"{split}_images"] = torch.cat([images for images, _ in batches])
        tensors[f"{split}_labels"] = torch.cat([labels for _, labels in batches])
    return tensors


def _read_pickle(path: Path, label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not path.is_file():
        raise TaskError(f"{path.parent} is incomplete: {path.name} is missing; "
                        f"re-extract the archive or delete the folder")
    try:
        with path.open("rb") as handle:
            entry = ArrayUnpickler(handle, encoding="latin1").load()
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry[label_key], dtype=np.int64)
    except Exception as err:  # pickle, key, and numpy conversion failures all mean a bad file
        raise TaskError(f"cannot read CIFAR pickle {path} ({one_line(err)})") from err
    if data.ndim != 2 or data.shape[1] != int(np.prod(CIFAR_SHAPE)) or len(labels) != len(data):
        raise TaskError(f"CIFAR pickle {path} has data {data.shape} and {len(labels)} labels; "
                        f"expected [N, 3072] and N labels")
    images = torch.from_numpy(data.reshape(-1, *CIFAR_SHAPE).copy())
    return images, torch.from_numpy(labels)


def find_image_tree(root: Path) -> Path | None:
    """Return root or its single subdirectory holding train/ and test/ folders, else None."""
    def is_tree(path: Path) -> bool:
        return (path / "train").is_dir() and (path / "test").is_dir()

    if is_tree(root):
        return root
    trees = sorted(child for child in root.iterdir() if child.is_dir() and is_tree(child))
    if len(trees) > 1:
        names = ", ".join(tree.name for tree in trees)
        raise TaskError(f"several image-folder trees in {root} ({names}); pass one of them as root")
    return trees[0] if trees else None


@dataclass(frozen=True)
class ImageFolder:
    """The images of a train/ and test/ tree, labelled by the sorted class folder names."""

    tree: Path
    classes: tuple[str, ...]
    files: dict[str, tuple[tuple[Path, int], ...]]  # split -> (image file, label) pairs

    def all_files(self) -> list[Path]:
        """Every image file of both splits, in reading order."""
        return [path for split in SPLITS for path, _ in self.files[split]]


def scan_image_folder(tree: Path, *, num_classes: int,
                      allow_empty_classes: bool = False) -> ImageFolder:
    """List tree/{train,test}/<class>/*.{jpg,png} without decoding; labels follow sorted class
    names. A class folder without images is an error, or a warning with allow_empty_classes."""
    classes = _class_names(tree / "train")
    if len(classes) != num_classes:
        raise TaskError(f"{tree / 'train'} has {len(classes)} class folders; "
                        f"expected {num_classes}")
    test_classes = _class_names(tree / "test")
    if test_classes != classes:
        missing = sorted(set(classes) ^ set(test_classes))
        raise TaskError(f"class folders of {tree / 'test'} differ from train/: "
                        f"{', '.join(missing)}")
    listed = {(split, name): _image_files(tree / split / name)
              for split in SPLITS for name in classes}
    for split in SPLITS:
        if not any(listed[split, name] for name in classes):
            raise TaskError(f"no .jpg/.png images under {tree / split}")
    _check_empty_classes(tree, [f"{split}/{name}" for (split, name), paths in listed.items()
                                if not paths], allow_empty_classes)
    files = {split: tuple((path, label) for label, name in enumerate(classes)
                          for path in listed[split, name]) for split in SPLITS}
    return ImageFolder(tree=tree, classes=tuple(classes), files=files)


def _check_empty_classes(tree: Path, empty: list[str], allowed: bool) -> None:
    if not empty:
        return
    folders = ", ".join(empty)
    if not allowed:
        raise TaskError(f"class folder(s) without .jpg/.png images in {tree}: {folders}; put the "
                        f"images back, or set task.allow_empty_classes=true to use the rest")
    warnings.warn(f"class folder(s) without .jpg/.png images in {tree}: {folders}; "
                  f"allow_empty_classes is set, so these classes are never seen", stacklevel=2)


def read_image_folder(folder: ImageFolder) -> dict[str, torch.Tensor]:
    """Decode the images of a scanned tree into uint8 tensors and int64 labels per split."""
    tensors: dict[str, torch.Tensor] = {}
    for split in SPLITS:
        files = folder.files[split]
        images = torch.empty((len(files), *CIFAR_SHAPE), dtype=torch.uint8)
        for index, (path, _) in enumerate(files):
            images[index] = _decode(path)
        tensors[f"{split}_images"] = images
        tensors[f"{split}_labels"] = torch.tensor([label for _, label in files], dtype=torch.int64)
    return tensors


def _class_names(directory: Path) -> list[str]:
    return sorted(child.name for child in directory.iterdir() if child.is_dir())


def _image_files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.iterdir()
                  if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def _decode(path: Path) -> torch.Tensor:
    """One image file as uint8 [3, 32, 32]; an unreadable or undecodable file is a TaskError
    naming it (torchvision's own message is left out: it points into its C++ sources)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TaskError(f"cannot read image {path} ({err.strerror or type(err).__name__}); "
                        f"check its permissions or delete it") from err
    try:
        encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        image = decode_image(encoded, mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError) as err:
        raise TaskError(f"image {path} is corrupt, truncated or not a JPEG/PNG file; "
                        f"replace it with a good copy or delete it") from err
    if tuple(image.shape) != CIFAR_SHAPE:
        raise TaskError(f"image {path} is {image.shape[2]}x{image.shape[1]}; "
                        f"CIFAR images are 32x32")
    return image
