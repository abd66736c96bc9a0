"""NAS-Bench-201's ImageNet16-120: downsampled ImageNet at 16x16, the first 120 classes.

The published layout (Chrabaszcz et al., 2017, "A Downsampled Variant of ImageNet"; as read by
NAS-Bench-201, Dong & Yang, 2020) is a folder of pickles ``train_data_batch_1`` ..
``train_data_batch_10`` and ``val_data``, each a dict whose ``data`` is uint8 [N, 768]
(channel-major 3x16x16) and ``labels`` the 1-based ImageNet classes. NAS-Bench-201 keeps the
images with labels 1..120 and numbers them 0..119; the validation pickle is the test set. The
pickles are read with an unpickler that builds nothing but numpy arrays.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from tasks.cifar_files import ArrayUnpickler
from tasks.data import ImageDataset
from tasks.errors import TaskError, one_line

TRAIN_FILES = tuple(f"train_data_batch_{i}" for i in range(1, 11))
TEST_FILE = "val_data"
SHAPE = (3, 16, 16)
IMAGENET_CLASSES = 1000
# NAS-Bench-201's normalization for ImageNet16-120 (Dong & Yang, 2020, their data loader).
MEAN = (122.68 / 255, 116.66 / 255, 104.01 / 255)
STD = (63.22 / 255, 61.26 / 255, 65.09 / 255)


def load_imagenet16(root: str | os.PathLike[str] | None, *,
                    num_classes: int = 120) -> ImageDataset:
    """Read the ImageNet16 pickles in ``root`` (or its ``ImageNet16`` subfolder), keeping the
    images of the first ``num_classes`` classes (120 in NAS-Bench-201)."""
    if root is None:
        raise TaskError("task=imagenet16 needs task.root=DIR (the folder of train_data_batch_1 "
                        "... train_data_batch_10 and val_data)")
    if not 1 <= num_classes <= IMAGENET_CLASSES:
        raise TaskError(f"num_classes must lie in [1, {IMAGENET_CLASSES}], got {num_classes}")
    folder = _find_folder(Path(root).expanduser())
    train = [_read(folder / name, num_classes) for name in TRAIN_FILES]
    test_images, test_labels = _read(folder / TEST_FILE, num_classes)
    return ImageDataset(name="imagenet16", num_classes=num_classes, mean=MEAN, std=STD,
                        train_images=torch.cat([images for images, _ in train]),
                        train_labels=torch.cat([labels for _, labels in train]),
                        test_images=test_images, test_labels=test_labels,
                        class_names=tuple(str(label) for label in range(1, num_classes + 1)))


def _find_folder(root: Path) -> Path:
    for folder in (root, root / "ImageNet16"):
        if (folder / TEST_FILE).is_file():
            missing = [name for name in TRAIN_FILES if not (folder / name).is_file()]
            if missing:
                raise TaskError(f"{folder} is incomplete: {', '.join(missing)} missing")
            return folder
    raise TaskError(f"no ImageNet16 data in {root}: expected {TRAIN_FILES[0]} .. "
                    f"{TRAIN_FILES[-1]} and {TEST_FILE} there or in {root / 'ImageNet16'}")


def _read(path: Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (uint8 [N, 3, 16, 16]) and 0-based labels of one pickle with label <=
    ``num_classes``."""
    try:
        with path.open("rb") as handle:
            entry = ArrayUnpickler(handle, encoding="latin1").load()
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry["labels"], dtype=np.int64)
    except Exception as err:  # pickle, key and numpy conversion failures all mean a bad file
        raise TaskError(f"cannot read ImageNet16 pickle {path} ({one_line(err)})") from err
    if data.ndim != 2 or data.shape[1] != int(np.prod(SHAPE)) or len(labels) != len(data):
        raise TaskError(f"ImageNet16 pickle {path} has data {data.shape} and {len(labels)} "
                        f"labels; expected [N, 768] and N labels")
    if len(labels) and (labels.min() < 1 or labels.max() > IMAGENET_CLASSES):
        raise TaskError(f"ImageNet16 pickle {path} has labels outside 1..{IMAGENET_CLASSES}")
    keep = labels <= num_classes
    images = torch.from_numpy(data[keep].reshape(-1, *SHAPE).copy())
    return images, torch.from_numpy(labels[keep] - 1)
