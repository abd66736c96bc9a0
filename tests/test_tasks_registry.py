"""Task registry errors and the rule that tasks/ never imports Lightning."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tasks import ImageDataset, TaskError, list_tasks, load_task

TASKS_DIR = Path(__file__).resolve().parents[1] / "tasks"


def test_list_tasks() -> None:
    assert list_tasks() == ["cifar10", "cifar100", "imagefolder", "imagenet16", "synthetic"]


def test_unknown_task_lists_choices() -> None:
    expected = (r"unknown task 'foo'; choose one of: cifar10, cifar100, imagefolder, imagenet16, "
                r"synthetic$")
    with pytest.raises(TaskError, match=expected):
        load_task("foo", root=".")
    assert issubclass(TaskError, ValueError)


def test_unknown_options_are_named(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="'synthetic': colour; choose from: num_train"):
        load_task("synthetic", colour=3)
    with pytest.raises(TaskError, match="'cifar10' takes no options.*num_train"):
        load_task("cifar10", root=tmp_path, num_train=3)
    with pytest.raises(TaskError, match="'cifar100' needs root="):
        load_task("cifar100")
    with pytest.raises(TaskError, match="allow_empty_classes must be true or false, got 'yes'"):
        load_task("cifar10", root=tmp_path, allow_empty_classes="yes")


def test_synthetic_ignores_root_and_download() -> None:
    data = load_task("synthetic", root="/nonexistent", download=False, num_train=8, num_test=4)
    assert isinstance(data, ImageDataset) and len(data.train_labels) == 8


def test_dataset_validates_its_tensors() -> None:
    good = load_task("synthetic", num_train=4, num_test=2, num_classes=2)
    with pytest.raises(TaskError, match="train_labels must lie in \\[0, 1\\)"):
        ImageDataset(name="x", train_images=good.train_images, train_labels=good.train_labels,
                     test_images=good.test_images, test_labels=good.test_labels,
                     num_classes=1, mean=good.mean, std=good.std)
    with pytest.raises(TaskError, match="train_images must be uint8"):
        ImageDataset(name="x", train_images=good.train_images.float(),
                     train_labels=good.train_labels, test_images=good.test_images,
                     test_labels=good.test_labels, num_classes=2, mean=good.mean, std=good.std)


def test_no_lightning_import_in_tasks() -> None:
    modules = ["tasks", *sorted(f"tasks.{path.stem}" for path in TASKS_DIR.glob("[!_]*.py"))]
    code = ("import sys, importlib\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('lightning', 'pytorch_lightning', 'lightning_fabric')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=TASKS_DIR.parent, check=True)
    assert result.stdout.strip() == "[]"
    pattern = re.compile(r"^\s*(import|from)\s+(pytorch_)?lightning", re.MULTILINE)
    for path in TASKS_DIR.glob("*.py"):
        assert not pattern.search(path.read_text()), path
