"""A search writes each epoch's cell diagrams (SVG, or dot source) and TensorBoard images."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_search
from oneshot.search.callbacks import CellDiagramWriter
from oneshot.render import dot_available
from oneshot.train import train
from supernets.choice_genotype import ChoiceGenotype
from supernets.darts.genotype import DartsGenotype
from supernets.genotype_file import load_genotype_file
from supernets.nb201.genotype import Nb201Genotype

needs_dot = pytest.mark.skipif(not dot_available(), reason="Graphviz's dot is not installed")


def _images(run_dir) -> dict[str, list[int]]:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    return {tag: [image.step for image in events.Images(tag)] for tag in events.Tags()["images"]}


@needs_dot
def test_search_writes_svg_per_epoch_and_tensorboard_images(search_run) -> None:
    run_dir = search_run["run_dir"]
    assert sorted(p.name for p in (run_dir / "diagrams").iterdir()) == [
        f"epoch_00{epoch}_{cell}.svg" for epoch in (0, 1) for cell in ("normal", "reduce")]
    document = load_genotype_file(run_dir / "genotypes" / "epoch_001.json")
    genotype = DartsGenotype.from_dict(document.genotype)
    svg = (run_dir / "diagrams" / "epoch_001_reduce.svg").read_text()
    assert "reduce cell, epoch 1" in svg
    assert all(op in svg for op, _ in genotype.reduce)
    images = _images(run_dir)
    assert images["cell/normal"] == [0, 1] and images["cell/reduce"] == [0, 1]


def test_search_without_dot_writes_dot_source_and_warns_once(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    run_dir = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(compose_search(f"run_dir={run_dir}", "trainer.limit_train_batches=2",
                             "trainer.limit_val_batches=1"))
    about_diagrams = [w for w in caught if "cell diagrams" in str(w.message)]
    assert len(about_diagrams) == 1 and "apt-get install graphviz" in str(about_diagrams[0].message)
    assert sorted(p.name for p in (run_dir / "diagrams").iterdir()) == [
        f"epoch_00{epoch}_{cell}.dot" for epoch in (0, 1) for cell in ("normal", "reduce")]
    source = (run_dir / "diagrams" / "epoch_001_normal.dot").read_text()
    assert source.startswith("digraph normal {") and 'label="normal cell, epoch 1"' in source
    assert (run_dir / "genotype.json").is_file()
    assert not any(tag.startswith("cell/") for tag in _images(run_dir))


def test_space_without_renderer_gets_the_choices_drawing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    callback = CellDiagramWriter(tmp_path, space="unregistered")
    trainer = SimpleNamespace(is_global_zero=True, current_epoch=0, loggers=[])
    genotype = ChoiceGenotype((("cell/op", "conv"),))
    with pytest.warns(UserWarning, match="written as dot source"):
        callback.on_train_epoch_end(trainer, SimpleNamespace(genotype=lambda: genotype))
    source = (tmp_path / "diagrams" / "epoch_000_choices.dot").read_text()
    assert 'label="cell/op\\nconv"' in source


def test_nb201_epoch_diagram_is_named_by_its_cell(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    genotype = Nb201Genotype.from_text(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    callback = CellDiagramWriter(tmp_path, space="nb201")
    trainer = SimpleNamespace(is_global_zero=True, current_epoch=3, loggers=[])
    with pytest.warns(UserWarning, match="written as dot source"):
        callback.on_train_epoch_end(trainer, SimpleNamespace(genotype=lambda: genotype))
    source = (tmp_path / "diagrams" / "epoch_003_cell.dot").read_text()
    assert 'label="cell, epoch 3"' in source and "n2 -> n3 [label=nor_conv_1x1" in source
