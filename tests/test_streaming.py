"""The streaming path: the same batches (order, labels, augmentation) as the in-memory path,
resuming at the batch after the last one handed out, and unreadable files skipped mid-epoch."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import tasks.streaming as streaming
from oneshot.training.datamodules import RetrainDataModule, SearchDataModule
from tasks import load_task
from tasks.imagefolder import decode_all
from tasks.loader import make_loader
from tasks.streaming import FileImages, make_stream_loader
from test_tasks_imagefolder import make_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("stream") / "data", per_class=12)


def _load(folder: Path, cache: Path, **options: object):
    return load_task("imagefolder", root=str(folder), image_size=8, cache_dir=str(cache),
                     **options)


def test_a_tiny_memory_budget_streams_the_same_augmented_batches(folder: Path,
                                                                 tmp_path: Path) -> None:
    memory = _load(folder, tmp_path / "memory", workers=0)
    streamed = _load(folder, tmp_path / "stream", workers=2, memory_budget_gb=0)
    assert streamed.streamed and not memory.streamed
    assert not (tmp_path / "stream" / "imagefolder-8px-uint8.pt").exists()
    assert streamed.mean == memory.mean and streamed.std == memory.std  # computed separately
    assert torch.equal(streamed.train_labels, memory.train_labels)

    modules = [SearchDataModule(data, batch_size=5, seed=3, subset=20, eval_batch_size=7)
               for data in (memory, streamed)]
    for module in modules:  # what on_after_batch_transfer reads from the Trainer
        module.trainer = SimpleNamespace(training=True, current_epoch=1, global_step=0,
                                         global_rank=0)
    seen = []
    for module in modules:
        loader = module.train_dataloader()
        loader.iterables["train"].sampler.set_epoch(1)
        loader.iterables["val"].sampler.set_epoch(1)
        batches = []
        for step, batch in enumerate(iter(loader)):
            module.trainer.global_step = step
            batches.append(module.on_after_batch_transfer(batch[0] if isinstance(batch, tuple)
                                                          else batch, 0))
        seen.append(batches)
    assert len(seen[0]) == len(seen[1]) == 2
    for mine, theirs in zip(*seen):
        for half in ("train", "val"):
            assert torch.equal(mine[half][0], theirs[half][0])  # augmented, normalized
            assert torch.equal(mine[half][1], theirs[half][1])
    evaluations = [[labels for _, labels in module.val_dataloader()] for module in modules]
    assert [b.tolist() for b in evaluations[0]] == [b.tolist() for b in evaluations[1]]
    tests = [RetrainDataModule(data, batch_size=4, eval_batch_size=4).test_dataloader()
             for data in (memory, streamed)]
    for (a, y), (b, z) in zip(*tests):
        assert torch.equal(a, b) and torch.equal(y, z)


def test_the_stream_loader_resumes_after_the_batches_it_handed_out(folder: Path) -> None:
    paths = sorted(str(path) for path in folder.rglob("*.*g"))
    labels = torch.arange(len(paths))
    files = FileImages(paths, 8, workers=2)
    decoded, _ = decode_all(FileImages(paths, 8), labels, desc="test")
    options = dict(batch_size=4, shuffle=True, seed=7, drop_last=True)
    reference = list(make_loader(decoded, labels, **options))

    loader = make_stream_loader(files, labels, **options)
    iterator = iter(loader)
    first = [next(iterator) for _ in range(3)]  # the workers have prefetched more
    state = loader.state_dict()
    assert state == {"epoch": 0, "batches": 3}
    resumed = make_stream_loader(files, labels, **options)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(first) + len(rest) == len(reference) == len(paths) // 4
    for (a, y), (b, z) in zip(first + rest, reference):
        assert torch.equal(a, b) and torch.equal(y, z)
    assert resumed.state_dict() == {"epoch": 0, "batches": len(reference)}


def test_unreadable_files_are_skipped_mid_epoch_and_named_a_few_times(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = make_folder(tmp_path / "data", per_class=2)
    good = sorted(str(path) for path in folder.rglob("*.*g"))
    bad = []
    for index in range(4):
        path = tmp_path / f"bad{index}.jpg"
        path.write_bytes(b"garbage")
        bad.append(str(path))
    monkeypatch.setattr(streaming, "NAMED_BAD_FILES", 2)
    files = FileImages(good + bad, 8)
    labels = torch.arange(len(files))
    loader = make_stream_loader(files, labels, batch_size=5, shuffle=False, seed=0,
                                drop_last=False)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):  # every epoch meets the bad files; each is reported once
            batches = list(loader)
    assert [len(y) for _, y in batches] == [5, 1]  # 6 + 4 files, batches of 5
    assert torch.cat([y for _, y in batches]).tolist() == list(range(len(good)))
    assert [record.getMessage() for record in caplog.records] == [
        f"warning: skipping image {bad[0]}: it cannot be read or is not a JPEG/PNG/WebP file",
        f"warning: skipping image {bad[1]}: it cannot be read or is not a JPEG/PNG/WebP file",
        "warning: skipped 2 more unreadable image(s)"]
