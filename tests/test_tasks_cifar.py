"""CIFAR loading from every accepted layout, the decode cache and the no-data errors."""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tasks import TaskError, load_task
from tasks import cifar, cifar_files
from tasks.cache import CACHE_VERSION
from tasks.cifar import cache_path

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]


def _pixels(n: int, start: int) -> np.ndarray:
    return ((np.arange(n * 3072).reshape(n, 3072) + start) % 251).astype(np.uint8)


def write_cifar10_pickles(root: Path, per_batch: int = 2) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        entry = {"data": _pixels(per_batch, b), "labels": [(b + i) % 10 for i in range(per_batch)]}
        with (folder / name).open("wb") as handle:
            pickle.dump(entry, handle, protocol=2)
    return folder


def write_cifar100_pickles(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, labels in (("train", [0, 55, 99]), ("test", [7, 42])):
        entry = {"data": _pixels(len(labels), 0), "fine_labels": labels,
                 "coarse_labels": [0] * len(labels)}
        with (folder / name).open("wb") as handle:
            pickle.dump(entry, handle, protocol=2)


def write_image_tree(tree: Path, classes: list[str], *, per_class: int = 2,
                     suffix: str = ".png") -> None:
    """Uniform images whose grey level encodes the class index (level = 20 * label + 10)."""
    for split in ("train", "test"):
        for label, name in enumerate(sorted(classes)):
            folder = tree / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (32, 32), (20 * label + 10,) * 3).save(folder / f"{i:04d}{suffix}")


def test_cifar10_pickles_load_with_values_and_labels(tmp_path: Path) -> None:
    write_cifar10_pickles(tmp_path)
    data = load_task("cifar10", root=tmp_path, download=False)
    assert data.train_images.shape == (10, 3, 32, 32) and data.test_images.shape == (2, 3, 32, 32)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert data.train_labels.tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5]
    assert data.test_labels.tolist() == [5, 6]
    expected = torch.from_numpy(_pixels(2, 0).reshape(2, 3, 32, 32))
    assert torch.equal(data.train_images[:2], expected)
    assert data.num_classes == 10 and data.mean == (0.4914, 0.4822, 0.4465)
    assert data.std == (0.2470, 0.2435, 0.2616)


def test_cifar100_pickles_use_fine_labels(tmp_path: Path) -> None:
    write_cifar100_pickles(tmp_path)
    data = load_task("cifar100", root=tmp_path, download=False)
    assert data.train_labels.tolist() == [0, 55, 99] and data.test_labels.tolist() == [7, 42]
    assert data.num_classes == 100 and data.mean == (0.5071, 0.4865, 0.4409)
    assert data.std == (0.2673, 0.2564, 0.2762)


def test_image_folder_in_root_maps_sorted_classes_to_cifar_labels(tmp_path: Path) -> None:
    write_image_tree(tmp_path, CIFAR10_CLASSES[::-1])
    data = load_task("cifar10", root=tmp_path, download=False)
    assert data.train_images.shape == (20, 3, 32, 32) and data.test_images.shape == (20, 3, 32, 32)
    assert data.train_labels.tolist() == [label for label in range(10) for _ in range(2)]
    levels = data.train_images.float().mean(dim=(1, 2, 3))
    assert torch.equal(levels, 20 * data.train_labels.float() + 10)


def test_image_folder_in_single_subdirectory_jpg(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "cifar10-jpg", CIFAR10_CLASSES, per_class=1, suffix=".jpg")
    data = load_task("cifar10", root=tmp_path, download=False)
    assert data.test_labels.tolist() == list(range(10))
    levels = data.test_images.float().mean(dim=(1, 2, 3))
    assert torch.allclose(levels, 20 * data.test_labels.float() + 10, atol=2)
    assert cache_path("cifar10", tmp_path).is_file()


def test_cifar100_image_folder_has_100_labels(tmp_path: Path) -> None:
    write_image_tree(tmp_path, [f"class{i:03d}" for i in range(100)], per_class=1)
    data = load_task("cifar100", root=tmp_path, download=False)
    assert data.train_labels.tolist() == list(range(100))


def test_cache_is_reused_without_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_image_tree(tmp_path, CIFAR10_CLASSES, per_class=1)
    first = load_task("cifar10", root=tmp_path, download=False)
    assert cache_path("cifar10", tmp_path).is_file()

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(cifar, "read_image_folder", fail)
    monkeypatch.setattr(cifar, "read_cifar_pickles", fail)
    second = load_task("cifar10", root=tmp_path, download=False)
    assert torch.equal(first.train_images, second.train_images)
    assert torch.equal(first.test_labels, second.test_labels)


@pytest.mark.parametrize(("umask", "mode"), [(0o002, 0o664), (0o077, 0o600)])
def test_cache_file_mode_follows_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    write_cifar10_pickles(tmp_path)
    previous = os.umask(umask)
    try:
        load_task("cifar10", root=tmp_path, download=False)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(cache_path("cifar10", tmp_path).stat().st_mode) == mode
    assert not [path for path in cache_path("cifar10", tmp_path).parent.iterdir()
                if path.name.endswith(".tmp")]


def test_corrupt_cache_is_rebuilt_with_warning(tmp_path: Path) -> None:
    write_cifar10_pickles(tmp_path)
    cache = cache_path("cifar10", tmp_path)
    cache.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="unreadable.*rebuilding"):
        data = load_task("cifar10", root=tmp_path, download=False)
    assert data.train_images.shape == (10, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(load_task("cifar10", root=tmp_path, download=False).train_images,
                           data.train_images)


def test_cache_with_wrong_content_is_rejected(tmp_path: Path) -> None:
    write_cifar10_pickles(tmp_path)
    torch.save({"version": CACHE_VERSION, "fingerprint": "x",
                "train_images": torch.zeros(2, 3, 8, 8, dtype=torch.uint8)},
               cache_path("cifar10", tmp_path))
    with pytest.warns(UserWarning, match="train_images is not uint8"):
        data = load_task("cifar10", root=tmp_path, download=False)
    assert data.train_images.shape[1:] == (3, 32, 32)


def test_cache_write_failure_only_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar10_pickles(tmp_path)

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError("read-only file system")

    monkeypatch.setattr(cifar, "save_cache", read_only)
    with pytest.warns(UserWarning, match="could not write cache"):
        data = load_task("cifar10", root=tmp_path, download=False)
    assert len(data.train_labels) == 10


def test_no_data_offline_names_path_and_layouts(tmp_path: Path) -> None:
    with pytest.raises(TaskError) as info:
        load_task("cifar10", root=tmp_path / "missing", download=False)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / "missing") in message
    assert "cifar-10-batches-py" in message and "train/<class>" in message


def test_failed_download_is_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(spec: object, root: Path) -> None:
        raise OSError("<urlopen error [Errno 101] Network is unreachable>\nmore detail")

    monkeypatch.setattr(cifar, "_download", offline)
    with pytest.raises(TaskError, match="download failed.*Network is unreachable") as info:
        load_task("cifar100", root=tmp_path, download=True)
    assert "\n" not in str(info.value) and "cifar-100-python" in str(info.value)


def test_download_result_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cifar, "_download", lambda spec, root: write_cifar10_pickles(root))
    data = load_task("cifar10", root=tmp_path, download=True)
    assert len(data.train_labels) == 10 and cache_path("cifar10", tmp_path).is_file()


def test_wrong_class_count_is_rejected(tmp_path: Path) -> None:
    write_image_tree(tmp_path, CIFAR10_CLASSES[:3], per_class=1)
    with pytest.raises(TaskError, match="3 class folders; expected 10"):
        load_task("cifar10", root=tmp_path, download=False)


def test_wrong_image_size_names_the_file(tmp_path: Path) -> None:
    write_image_tree(tmp_path, CIFAR10_CLASSES, per_class=1)
    bad = tmp_path / "test" / "cat" / "0000.png"
    Image.new("RGB", (16, 16)).save(bad)
    with pytest.raises(TaskError, match=f"{bad}.*32x32"):
        load_task("cifar10", root=tmp_path, download=False)


def test_several_image_trees_are_ambiguous(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name / "train").mkdir(parents=True)
        (tmp_path / name / "test").mkdir()
    with pytest.raises(TaskError, match="several image-folder trees.*a, b"):
        load_task("cifar10", root=tmp_path, download=False)


def test_incomplete_pickle_folder_is_reported(tmp_path: Path) -> None:
    folder = write_cifar10_pickles(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(TaskError, match="data_batch_3 is missing"):
        load_task("cifar10", root=tmp_path, download=False)


def test_pickle_with_foreign_globals_is_refused(tmp_path: Path) -> None:
    folder = write_cifar10_pickles(tmp_path)
    with (folder / "test_batch").open("wb") as handle:
        pickle.dump({"data": _pixels(1, 0), "labels": [0], "hook": warnings.warn}, handle)
    with pytest.raises(TaskError, match="cannot read CIFAR pickle.*unexpected global"):
        cifar_files.read_cifar_pickles(folder, train_files=("data_batch_1",),
                                       test_files=("test_batch",), label_key="labels")


def test_cache_without_source_record_is_rebuilt(tmp_path: Path) -> None:
    write_cifar10_pickles(tmp_path)
    data = load_task("cifar10", root=tmp_path, download=False)
    payload = torch.load(cache_path("cifar10", tmp_path), weights_only=True)
    torch.save({**payload, "version": 1}, cache_path("cifar10", tmp_path))
    with pytest.warns(UserWarning, match="unknown format.*rebuilding"):
        again = load_task("cifar10", root=tmp_path, download=False)
    assert torch.equal(again.train_images, data.train_images)


def test_cache_alone_is_used_when_the_source_is_gone(tmp_path: Path) -> None:
    write_image_tree(tmp_path / "jpg", CIFAR10_CLASSES, per_class=1)
    first = load_task("cifar10", root=tmp_path, download=False)
    shutil.rmtree(tmp_path / "jpg")
    assert torch.equal(load_task("cifar10", root=tmp_path, download=False).train_labels,
                       first.train_labels)


def _levels(images: torch.Tensor) -> list[int]:
    return images.float().mean(dim=(1, 2, 3)).round().int().tolist()


def test_cache_follows_images_added_removed_and_changed(tmp_path: Path) -> None:
    write_image_tree(tmp_path, CIFAR10_CLASSES, per_class=2)
    assert len(load_task("cifar10", root=tmp_path, download=False).train_labels) == 20
    Image.new("RGB", (32, 32), (200,) * 3).save(tmp_path / "train" / "cat" / "0002.png")
    added = load_task("cifar10", root=tmp_path, download=False)
    assert added.train_labels.tolist().count(3) == 3 and 200 in _levels(added.train_images)
    (tmp_path / "test" / "dog" / "0000.png").unlink()
    removed = load_task("cifar10", root=tmp_path, download=False)
    assert removed.test_labels.tolist().count(5) == 1
    changed_file = tmp_path / "train" / "ship" / "0001.png"
    Image.new("RGB", (32, 32), (7,) * 3).save(changed_file)
    os.utime(changed_file, ns=(1, 1))  # even with an old mtime, the size or mtime differs
    changed = load_task("cifar10", root=tmp_path, download=False)
    assert 7 in _levels(changed.train_images[changed.train_labels == 8])


def test_empty_class_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    write_image_tree(tmp_path, CIFAR10_CLASSES, per_class=2)
    for image in (tmp_path / "train" / "frog").iterdir():
        image.unlink()
    with pytest.raises(TaskError) as info:
        load_task("cifar10", root=tmp_path, download=False)
    message = str(info.value)
    assert "\n" not in message and "train/frog" in message
    assert "task.allow_empty_classes=true" in message and "put the images back" in message


def test_empty_class_is_a_warning_when_allowed(tmp_path: Path) -> None:
    write_image_tree(tmp_path, CIFAR10_CLASSES, per_class=2)
    for image in (tmp_path / "test" / "bird").iterdir():
        image.unlink()
    with pytest.warns(UserWarning, match="test/bird.*never seen"):
        data = load_task("cifar10", root=tmp_path, download=False, allow_empty_classes=True)
    assert 2 not in data.test_labels.tolist() and len(data.test_labels) == 18


def test_empty_class_is_not_hidden_by_the_cache(tmp_path: Path) -> None:
    write_image_tree(tmp_path, CIFAR10_CLASSES, per_class=2)
    with pytest.warns(UserWarning, match="train/cat"):
        images = sorted((tmp_path / "train" / "cat").iterdir())
        stash = {path: path.read_bytes() for path in images}
        for path in images:
            path.unlink()
        load_task("cifar10", root=tmp_path, download=False, allow_empty_classes=True)
    with pytest.raises(TaskError, match="train/cat"):
        load_task("cifar10", root=tmp_path, download=False)
    for path, content in stash.items():
        path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        data = load_task("cifar10", root=tmp_path, download=False)
    assert data.train_labels.tolist().count(3) == 2


@pytest.mark.parametrize("content", [b"", b"not an image at all", "half"])
def test_bad_jpeg_names_the_file_without_internals(tmp_path: Path, content: object) -> None:
    write_image_tree(tmp_path, CIFAR10_CLASSES, per_class=1, suffix=".jpg")
    bad = tmp_path / "train" / "horse" / "0000.jpg"
    if content == "half":
        content = bad.read_bytes()[:200]
    bad.write_bytes(content)
    with pytest.raises(TaskError) as info:
        load_task("cifar10", root=tmp_path, download=False)
    message = str(info.value)
    assert message.startswith(f"image {bad} is corrupt") and "delete it" in message
    assert ".cpp" not in message and "\n" not in message


def test_failed_download_leaves_no_empty_root_behind(tmp_path, monkeypatch) -> None:
    import tasks.cifar as cifar

    def failing_download(url, root, filename, md5):
        (Path(root) / filename).write_bytes(b"partial")
        raise OSError("network is unreachable")

    monkeypatch.setattr(cifar, "download_and_extract_archive", failing_download)
    root = tmp_path / "new" / "data"
    with pytest.raises(TaskError, match="the download failed .*network is unreachable"):
        load_task("cifar10", root=root, download=True)
    assert list(tmp_path.iterdir()) == []  # neither data/ nor new/ nor the partial archive
    kept = tmp_path / "kept"
    (kept / "mine.txt").parent.mkdir()
    (kept / "mine.txt").write_text("keep")
    with pytest.raises(TaskError):
        load_task("cifar10", root=kept, download=True)
    assert sorted(p.name for p in kept.iterdir()) == ["mine.txt"]
