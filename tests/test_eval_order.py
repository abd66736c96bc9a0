"""Limited evaluations of a search on class-sorted data (as an image-folder tree is read) still see
many classes: SPOS's eval and BatchNorm calibration batches, ENAS's derive batches."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Iterable

import pytest

import oneshot.search.algorithms.enas as enas_module
import oneshot.search.algorithms.spos as spos_module
import oneshot.train as train_module
from conftest import compose_search
from tasks import ImageDataset, load_task


def _class_sorted_synthetic(*_: object, **__: object) -> ImageDataset:
    """200 training and 100 test images of 10 classes, stored class by class."""
    data = load_task("synthetic", num_train=200, num_test=100, image_size=8)
    train = data.train_labels.argsort(stable=True)
    test = data.test_labels.argsort(stable=True)
    return dataclasses.replace(data, train_images=data.train_images[train],
                               train_labels=data.train_labels[train],
                               test_images=data.test_images[test],
                               test_labels=data.test_labels[test])


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """Runs searches on class-sorted data and records the batches each algorithm draws from its
    data loaders with islice."""
    calls: list[list[Any]] = []

    def recording_islice(iterable: Iterable[Any], stop: int | None) -> Iterable[Any]:
        items = list(itertools.islice(iterable, stop))
        if not hasattr(iterable, "__next__"):  # a DataLoader, not ENAS's endless generator
            calls.append(items)
        return iter(items)

    monkeypatch.setattr(train_module, "load_task", _class_sorted_synthetic)
    monkeypatch.setattr(enas_module, "islice", recording_islice)
    monkeypatch.setattr(spos_module, "islice", recording_islice)
    return calls


def _classes(batches: list[Any]) -> int:
    return len({int(label) for _, labels in batches for label in labels})


def test_spos_eval_and_calibration_batches_mix_classes(drawn, tmp_path) -> None:
    train_module.train(compose_search(
        f"run_dir={tmp_path}", "algorithm=spos", "space=nb201", "space.layers=1",
        "trainer.max_epochs=1", "trainer.limit_train_batches=2", "algorithm.search.population=2",
        "algorithm.search.sample_size=1", "algorithm.search.cycles=2",
        "algorithm.search.calib_batches=2", "algorithm.search.eval_batches=1"))
    calibration, evaluation = drawn
    assert [len(labels) for _, labels in calibration] == [8, 8]
    assert [len(labels) for _, labels in evaluation] == [16]
    assert _classes(calibration) >= 5 and _classes(evaluation) >= 5


def test_enas_derive_batches_mix_classes(drawn, tmp_path) -> None:
    train_module.train(compose_search(
        f"run_dir={tmp_path}", "algorithm=enas", "algorithm.controller_steps=2",
        "algorithm.derive_samples=2", "algorithm.controller.hidden_size=8",
        "trainer.max_epochs=1", "trainer.limit_train_batches=2"))
    (derive,) = drawn
    assert [len(labels) for _, labels in derive] == [16] and _classes(derive) >= 5
