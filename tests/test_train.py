"""End-to-end searches on tiny synthetic data through Hydra's compose API and ``train``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_search
from oneshot.errors import NonFiniteLossError
from oneshot.train import train
from supernets.darts.genotype import DartsGenotype
from supernets.genotype_file import load_genotype_file
from supernets.ops import DARTS_PRIMITIVES


def _alphas(checkpoint_path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)["state_dict"]
    return {key: value for key, value in state.items() if key.startswith("arch.alphas.")}


@pytest.fixture(scope="module")
def events(search_run) -> EventAccumulator:
    accumulator = EventAccumulator(str(search_run["run_dir"] / "tensorboard"),
                                   size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_final_genotype_file(search_run) -> None:
    document = load_genotype_file(search_run["run_dir"] / "genotype.json")
    assert document.space == "darts"
    assert DartsGenotype.from_dict(document.genotype) == search_run["result"]["genotype"]
    meta = document.meta
    assert {key: meta[key] for key in ("task", "algorithm", "epoch", "seed")} == {
        "task": "synthetic", "algorithm": "darts", "epoch": 1, "seed": 0}
    assert isinstance(meta["val_acc"], float) and 0.0 <= meta["val_acc"] <= 1.0
    assert meta["val_acc"] == pytest.approx(search_run["result"]["val_acc"])
    assert search_run["result"]["run_dir"] == search_run["run_dir"]


def test_genotype_per_epoch(search_run) -> None:
    folder = search_run["run_dir"] / "genotypes"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_000.json", "epoch_001.json"]
    for epoch in (0, 1):
        document = load_genotype_file(folder / f"epoch_{epoch:03d}.json")
        assert document.meta["epoch"] == epoch and document.meta["task"] == "synthetic"
        DartsGenotype.from_dict(document.genotype)
    last = load_genotype_file(folder / "epoch_001.json")
    assert last.genotype == load_genotype_file(search_run["run_dir"] / "genotype.json").genotype


def test_resolved_config(search_run) -> None:
    text = (search_run["run_dir"] / "config.yaml").read_text()
    assert "${" not in text
    cfg = OmegaConf.load(search_run["run_dir"] / "config.yaml")
    assert cfg.task.name == "synthetic" and cfg.space.channels == 4 and cfg.trainer.max_epochs == 2
    assert cfg.run_dir == str(search_run["run_dir"])
    assert cfg.algorithm.weight_optimizer.lr == 0.025


def test_checkpoint_is_safe_to_load_and_carries_the_search_record(search_run) -> None:
    path = search_run["run_dir"] / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    record = checkpoint["oneshot"]
    final = load_genotype_file(search_run["run_dir"] / "genotype.json")
    assert record["space"] == "darts"
    assert record["genotype"] == final.genotype
    assert record["meta"]["epoch"] == final.meta["epoch"] == 1
    assert len(record["candidates"]) == 28
    assert all(names == list(DARTS_PRIMITIVES) for names in record["candidates"].values())
    assert len(_alphas(path)) == 28
    assert checkpoint["hyper_parameters"]["unrolled"] is False


def test_checkpoint_is_written_every_epoch(search_run) -> None:
    # A search stopped by an error keeps its last finished epoch (see NonFiniteLossError's message).
    assert search_run["checkpoints_seen"] == {0: [], 1: ["last.ckpt"]}


def test_tensorboard_alpha_scalars(search_run, events) -> None:
    tags = set(events.Tags()["scalars"])
    expected = {f"alpha/{cell}/edge_{k}/{op}" for cell in ("normal", "reduce")
                for k in range(14) for op in DARTS_PRIMITIVES}
    assert expected <= tags
    assert all(tag in expected for tag in tags if tag.startswith("alpha/"))
    row = [events.Scalars(f"alpha/normal/edge_0/{op}") for op in DARTS_PRIMITIVES]
    assert all([e.step for e in series] == [0, 1] for series in row)
    final = torch.tensor([series[-1].value for series in row])
    alphas = _alphas(search_run["run_dir"] / "checkpoints" / "last.ckpt")
    torch.testing.assert_close(final, torch.softmax(alphas["arch.alphas.normal/edge_0"], -1))


def test_tensorboard_heatmaps_and_genotype_text(search_run, events) -> None:
    heatmaps = {tag for tag in events.Tags()["images"] if tag.startswith("alpha_heatmap/")}
    assert heatmaps == {"alpha_heatmap/normal", "alpha_heatmap/reduce"}
    for tag in ("alpha_heatmap/normal", "alpha_heatmap/reduce"):
        images = events.Images(tag)
        assert [image.step for image in images] == [0, 1]
        assert images[0].width > 100 and images[0].height > 100
    texts = events.Tensors("genotype/text_summary")
    assert [event.step for event in texts] == [0, 1]
    last = texts[-1].tensor_proto.string_val[0].decode().strip("`")
    assert DartsGenotype.from_text(last) == search_run["result"]["genotype"]


def test_same_seed_gives_identical_alphas(search_run, tmp_path) -> None:
    train(compose_search(f"run_dir={tmp_path}"))
    again = _alphas(tmp_path / "checkpoints" / "last.ckpt")
    first = _alphas(search_run["run_dir"] / "checkpoints" / "last.ckpt")
    assert again.keys() == first.keys()
    assert all(torch.equal(again[key], first[key]) for key in first)
    assert (tmp_path / "genotype.json").read_text() == \
        (search_run["run_dir"] / "genotype.json").read_text()


def test_second_order_search_runs(tmp_path, monkeypatch) -> None:
    import oneshot.search.algorithms.darts as darts

    calls = []
    original = darts.unrolled_arch_gradients

    def counted(*args, **kwargs):
        calls.append(args[6])  # the VirtualStep
        return original(*args, **kwargs)

    monkeypatch.setattr(darts, "unrolled_arch_gradients", counted)
    result = train(compose_search(f"run_dir={tmp_path}", "algorithm.unrolled=true",
                                  "trainer.max_epochs=1", "trainer.limit_train_batches=2"))
    assert len(calls) == 2  # one hypergradient per batch, with the weight optimizer's settings
    assert (calls[0].lr, calls[0].momentum, calls[0].weight_decay) == (0.025, 0.9, 3e-4)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu",
                            weights_only=True)
    assert checkpoint["hyper_parameters"]["unrolled"] is True
    assert checkpoint["global_step"] == 4  # 2 batches x (arch step + weight step)
    alphas = [value for key, value in checkpoint["state_dict"].items()
              if key.startswith("arch.alphas.")]
    assert all(torch.isfinite(a).all() for a in alphas)
    assert load_genotype_file(tmp_path / "genotype.json").genotype == result["genotype"].to_dict()


def test_exploding_loss_stops_with_a_one_line_error(tmp_path) -> None:
    cfg = compose_search(f"run_dir={tmp_path}", "algorithm.weight_optimizer.lr=1e9",
                         "trainer.max_epochs=1")
    with pytest.raises(NonFiniteLossError) as info:
        train(cfg)
    message = str(info.value)
    assert "\n" not in message
    assert "loss became" in message and ("nan" in message or "inf" in message)
    assert "at epoch 0, batch " in message
