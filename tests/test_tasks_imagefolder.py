"""task=imagefolder: layouts, decoding (sizes, formats, grayscale, corrupt files), the held-out
split, cached statistics, errors, the random-resized crop, and a search + retrain on a folder."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from torchvision.io import encode_jpeg, encode_png

import tasks.imagefolder as imagefolder
from conftest import TINY_SEARCH, compose_search
from oneshot.retrain import retrain
from oneshot.storage.classes import read_classes
from oneshot.train import train
from tasks import TaskError, load_task
from tasks.augment import random_resized_crop
from tasks.split import fit_subset

CLASSES = ("bird", "cat", "dog")
TINY_SPACE = tuple(option for option in TINY_SEARCH if not option.startswith("task"))
PER_CLASS = 8


def write_image(path: Path, image: torch.Tensor) -> None:
    """Save a uint8 [C, H, W] tensor as JPEG or PNG, by the path's suffix."""
    encode = encode_png if path.suffix == ".png" else encode_jpeg
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(image).numpy().tobytes())


def make_folder(root: Path, *, per_class: int = PER_CLASS, seed: int = 0) -> Path:
    """Class folders of mixed sizes and formats: class c's images are brightest in channel c."""
    generator = torch.Generator().manual_seed(seed)
    for label, name in enumerate(CLASSES):
        for index in range(per_class):
            image = torch.randint(0, 80, (3, 10 + index, 14 + 2 * index), dtype=torch.uint8,
                                  generator=generator)
            image[label] += 170
            write_image(root / name / f"{index}.{'png' if index % 2 else 'jpg'}", image)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """make_folder plus a grayscale PNG (class dog), a corrupt JPEG (class cat) and a text file."""
    root = make_folder(tmp_path_factory.mktemp("folder") / "pets")
    write_image(root / "dog" / "gray.png", torch.full((1, 9, 9), 200, dtype=torch.uint8))
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def test_class_folders_decode_to_rgb_squares_with_a_stratified_held_out_split(
        folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        data = load_task("imagefolder", root=str(folder), image_size=8, workers=0,
                         test_fraction=0.25, cache_dir=str(tmp_path))
    assert data.classes == CLASSES and data.num_classes == 3 and not data.streamed
    # files: 8, 8 + broken, 8 + gray; round(0.25 * n) of each class's files held out
    layout = imagefolder.scan_folder(folder, test_fraction=0.25, split_seed=0)
    assert [sum(label == c for _, label in layout.test) for c in range(3)] == [2, 2, 2]
    assert len(layout.train) == 26 - 6 and layout.held_out
    # decoded: every file but the broken one, wherever the split put it
    total = torch.bincount(torch.cat([data.train_labels, data.test_labels]), minlength=3)
    assert total.tolist() == [8, 8, 9] and len(data.train_labels) + len(data.test_labels) == 25
    assert data.train_images.shape[1:] == (3, 8, 8) and data.test_images.dtype == torch.uint8
    named = [r.getMessage() for r in caplog.records if "broken.jpg" in r.getMessage()]
    assert named == [f"warning: skipping image {folder / 'cat' / 'broken.jpg'}: it cannot be "
                     f"read or is not a JPEG/PNG/WebP file"]
    # each class's images are brightest in its own channel; the gray image has equal channels
    images = torch.cat([data.train_images, data.test_images]).float()
    labels = torch.cat([data.train_labels, data.test_labels])
    gray = (images == 200).all(dim=(1, 2, 3))
    assert gray.sum() == 1 and labels[gray].item() == 2
    assert torch.equal(images[~gray].mean(dim=(2, 3)).argmax(1), labels[~gray])
    # mean and std of the training pixels (the sample is all of them here)
    pixels = data.train_images.double().transpose(0, 1).flatten(1) / 255
    assert data.mean == pytest.approx(pixels.mean(1).tolist(), abs=1e-9)
    assert data.std == pytest.approx(pixels.std(1, unbiased=False).tolist(), abs=1e-9)


def test_split_follows_its_seed_and_a_second_load_reads_the_cache(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def load(seed: int):
        return load_task("imagefolder", root=str(folder), image_size=8, workers=0,
                         split_seed=seed, cache_dir=str(tmp_path / "new" / "cache"))

    first = load(0)
    assert sorted(path.name for path in (tmp_path / "new" / "cache").iterdir()) == [
        "imagefolder-8px-stats.json", "imagefolder-8px-uint8.pt"]
    monkeypatch.setattr("tasks.streaming.decode_file", lambda *args: pytest.fail("decoded"))
    again = load(0)
    assert torch.equal(again.train_images, first.train_images) and again.mean == first.mean
    monkeypatch.undo()
    other = load(1)  # another held-out split: the cache is rebuilt
    assert not torch.equal(other.test_images, first.test_images)
    assert len(other.train_labels) + len(other.test_labels) == 25  # every readable image


@pytest.mark.parametrize("budget", [None, 0.0])
def test_decoding_leaves_the_global_generator_alone(folder: Path, tmp_path: Path,
                                                    budget: float | None) -> None:
    state = torch.get_rng_state()  # a run seeds it, then loads the data, then builds the net
    data = load_task("imagefolder", root=str(folder), image_size=8, workers=1,
                     memory_budget_gb=budget, cache_dir=str(tmp_path))
    assert data.streamed == (budget == 0.0) and len(data.mean) == 3
    assert torch.equal(torch.get_rng_state(), state)


def test_train_and_val_folders_and_given_statistics(tmp_path: Path) -> None:
    make_folder(tmp_path / "data" / "train", per_class=3)
    make_folder(tmp_path / "data" / "val", per_class=2, seed=1)
    data = load_task("imagefolder", root=str(tmp_path / "data"), image_size=16, workers=0,
                     train_crop="random_resized", mean=[0.5, 0.4, 0.3], std=[0.2, 0.2, 0.2])
    assert (len(data.train_labels), len(data.test_labels)) == (9, 6)
    assert data.test_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.mean == (0.5, 0.4, 0.3) and data.random_resized_crop and data.crop_padding == 0
    assert not (tmp_path / "data" / "imagefolder-16px-stats.json").exists()


def _empty_class(root: Path) -> None:
    make_folder(root, per_class=2)
    (root / "cow").mkdir()


def _unknown_val_class(root: Path) -> None:
    make_folder(root / "train", per_class=2)
    make_folder(root / "val", per_class=1)
    (root / "val" / "owl").mkdir()


@pytest.mark.parametrize("setup, message", [
    (_empty_class, "class folder {root}/cow holds no .jpg/.jpeg/.png/.webp images; add some or "
                   "remove the folder"),
    (Path.mkdir, "no class folders in {root}; expected {root}/<class>/*.jpg or "
                 "{root}/train/<class>/*.jpg"),
    (lambda root: None, "task.root {root} is not a folder; pass task.root=DIR with class folders"),
    (_unknown_val_class, "class folder(s) of {root}/val not in {root}/train: owl"),
])
def test_folder_errors_are_one_line(tmp_path: Path, setup, message: str) -> None:
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(TaskError) as info:
        load_task("imagefolder", root=str(root), image_size=8, workers=0)
    assert str(info.value) == message.format(root=root)


def test_random_resized_crop_is_a_zoom_into_the_image() -> None:
    ramp = torch.arange(16.0).div(16).expand(2, 3, 16, 16).contiguous()
    same = random_resized_crop(ramp, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(same, ramp, atol=1e-6)
    quarter = random_resized_crop(ramp, scale=(0.25, 0.25), ratio=(1.0, 1.0),
                                  generator=torch.Generator().manual_seed(0))
    steps = quarter[..., 2:-2].diff(dim=-1)  # away from the clamped border
    assert torch.allclose(steps, torch.full_like(steps, 0.5 / 16), atol=1e-5)
    assert quarter.diff(dim=-2).abs().max() < 1e-6  # the ramp runs along columns only


def test_fit_subset_caps_a_preset_and_keeps_an_explicit_subset() -> None:
    assert fit_subset(None, 2000, 5000) == (2000, None)
    assert fit_subset(100, 2000, 50) == (100, None)  # checked (and refused) where it is used
    assert fit_subset(None, None, 50) == (None, None)
    subset, note = fit_subset(None, 2000, 50)
    assert subset is None and note == ("note: the preset's task.subset_at_most=2000 is not "
                                       "below the 50 training images; using all 50")


def test_search_and_retrain_on_a_folder(folder: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    task = ("task=imagefolder", f"task.root={folder}", "task.image_size=8", "task.workers=0",
            f"task.cache_dir={tmp_path}")
    search_dir = tmp_path / "search"
    result = train(compose_search(*task, "task.subset_at_most=2000", f"run_dir={search_dir}",
                                  "trainer.max_epochs=1", base=TINY_SPACE))
    assert ("note: the preset's task.subset_at_most=2000 is not below the 22 training images; "
            "using all 22") in capsys.readouterr().err
    assert read_classes(search_dir) == list(CLASSES) and (search_dir / "genotype.json").is_file()
    assert math.isfinite(result["val_acc"])
    with pytest.raises(TaskError, match=r"subset=500 is out of range; choose 2 <= subset <= 22"):
        train(compose_search(*task, "task.subset=500", f"run_dir={tmp_path / 'too_many'}",
                             base=TINY_SPACE))

    retrain_dir = tmp_path / "retrain"
    with initialize_config_module("oneshot.conf.retrain", version_base="1.3"):
        cfg = compose("retrain", overrides=[
            *task, f"genotype={search_dir}", f"run_dir={retrain_dir}", "network.channels=4",
            "network.layers=3", "network.auxiliary=false", "data.batch_size=8",
            "data.eval_batch_size=8",
            "trainer.accelerator=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
            "trainer.enable_progress_bar=false"])
    metrics = retrain(cfg)
    assert metrics["test_images"] == 3 and metrics["input_size"] == [1, 3, 8, 8]
    data = load_task("imagefolder", root=str(folder), image_size=8, cache_dir=str(tmp_path))
    assert json.loads((retrain_dir / "classes.json").read_text()) == {
        "task": "imagefolder", "classes": list(CLASSES), "mean": list(data.mean),
        "std": list(data.std)}
