"""task=imagenet16: NAS-Bench-201's ImageNet16-120, from a small fake in the published layout."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tasks import TaskError, load_task
from tasks.imagenet16 import MEAN, STD, TEST_FILE, TRAIN_FILES


def write_fake(folder: Path, per_file: int = 6, seed: int = 0) -> dict[str, tuple]:
    """Pickles named and shaped as the published ones (labels 1..200, data [N, 768] uint8)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in (*TRAIN_FILES, TEST_FILE):
        data = rng.integers(0, 256, (per_file, 768), dtype=np.uint8)
        labels = [int(label) for label in rng.integers(1, 201, per_file)]
        labels[0], labels[1] = 1, 120  # the boundary classes are kept, 121 is not
        labels[2] = 121
        entry = {"data": data, "labels": labels}
        if name != TEST_FILE:
            entry["mean"] = rng.random(768)
        with (folder / name).open("wb") as handle:
            pickle.dump(entry, handle)
        written[name] = (data, labels)
    return written


def test_the_first_120_classes_are_kept_and_numbered_from_zero(tmp_path: Path) -> None:
    written = write_fake(tmp_path / "ImageNet16")
    data = load_task("imagenet16", root=str(tmp_path))  # the ImageNet16 subfolder is found
    expected = {}
    for split, names in (("train", TRAIN_FILES), ("test", (TEST_FILE,))):
        rows = [(row, label) for name in names for row, label in zip(*written[name])
                if label <= 120]
        expected[split] = rows
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        assert images.shape == (len(rows), 3, 16, 16) and images.dtype == torch.uint8
        assert labels.tolist() == [label - 1 for _, label in rows]
        for image, (row, _) in zip(images, rows):  # channel-major rows: R plane, G, B
            assert torch.equal(image, torch.from_numpy(row.reshape(3, 16, 16)))
    assert data.num_classes == 120 and data.mean == MEAN and data.std == STD
    assert data.classes[0] == "1" and len(data.classes) == 120
    assert 0 in data.train_labels.tolist() and 119 in data.test_labels.tolist()


def test_pickles_are_read_without_running_their_code(tmp_path: Path) -> None:
    write_fake(tmp_path)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with (tmp_path / TEST_FILE).open("wb") as handle:
        pickle.dump({"data": Payload(), "labels": [1]}, handle)
    with pytest.raises(TaskError, match=r"cannot read ImageNet16 pickle .*val_data "
                                        r"\(unexpected global posix.system\)"):
        load_task("imagenet16", root=str(tmp_path))
    assert not marker.exists()


def test_missing_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match=r"^no ImageNet16 data in .*: expected train_data_batch_1 "
                                        r"\.\. train_data_batch_10 and val_data"):
        load_task("imagenet16", root=str(tmp_path))
    write_fake(tmp_path, per_file=3)
    (tmp_path / "train_data_batch_7").unlink()
    with pytest.raises(TaskError, match=r"is incomplete: train_data_batch_7 missing$"):
        load_task("imagenet16", root=str(tmp_path))
