"""Alpha evolution: a tiny search's alpha/ scalars read back per edge, plotted per cell type."""

from __future__ import annotations

import pytest
from torch.utils.tensorboard import SummaryWriter

from oneshot.errors import ConfigError
from oneshot.render import alpha_figures, plot_alpha_evolution, read_alpha_history, save_alpha_plots
from supernets.ops import DARTS_PRIMITIVES


@pytest.fixture(scope="module")
def history(search_run):
    return read_alpha_history(search_run["run_dir"])


def test_history_has_every_edge_candidate_and_epoch(history) -> None:
    assert list(history) == [f"{cell}/edge_{k}" for cell in ("normal", "reduce") for k in range(14)]
    for label, rows in history.items():
        assert list(rows) == list(DARTS_PRIMITIVES), label
        assert all([epoch for epoch, _ in points] == [0, 1] for points in rows.values())
        for epoch in (0, 1):
            assert sum(points[epoch][1] for points in rows.values()) == pytest.approx(1.0, abs=1e-5)


def test_history_matches_the_final_checkpoint_alphas(search_run, history) -> None:
    import torch

    state = torch.load(search_run["run_dir"] / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=True)["state_dict"]
    probabilities = torch.softmax(state["arch.alphas.normal/edge_3"], dim=0).tolist()
    assert [history["normal/edge_3"][op][-1][1] for op in DARTS_PRIMITIVES] == pytest.approx(
        probabilities, abs=1e-6)


def test_one_panel_per_edge_per_cell_type(history) -> None:
    figures = alpha_figures(history)
    assert list(figures) == ["normal", "reduce"]
    visible = [ax for ax in figures["reduce"].axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == [f"reduce/edge_{k}" for k in range(14)]
    assert all(len(ax.get_lines()) == len(DARTS_PRIMITIVES) for ax in visible)
    legend = figures["normal"].legends[0]
    assert [text.get_text() for text in legend.get_texts()] == list(DARTS_PRIMITIVES)


def test_save_writes_png_per_cell_type(search_run, tmp_path) -> None:
    paths = save_alpha_plots(search_run["run_dir"], tmp_path)
    assert [p.name for p in paths] == ["alpha_evolution_normal.png", "alpha_evolution_reduce.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_resumed_epochs_keep_the_last_value(tmp_path) -> None:
    writer = SummaryWriter(str(tmp_path / "tensorboard"))
    for epoch, value in [(0, 0.2), (1, 0.3), (1, 0.4), (2, 0.5)]:
        writer.add_scalar("alpha/cell/edge_10/conv", value, epoch)
        writer.add_scalar("alpha/cell/edge_2/conv", 1 - value, epoch)
    writer.add_scalar("train/loss", 1.0, 0)
    writer.close()
    history = read_alpha_history(tmp_path)
    assert list(history) == ["cell/edge_2", "cell/edge_10"]
    epochs, values = zip(*history["cell/edge_10"]["conv"])
    assert epochs == (0, 1, 2) and values == pytest.approx((0.2, 0.4, 0.5))
    figure = plot_alpha_evolution(history, ["cell/edge_10"])
    assert [ax.get_title() for ax in figure.axes] == ["cell/edge_10"]


def test_errors_name_what_to_do(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"no TensorBoard events in .*point to a run dir"):
        read_alpha_history(tmp_path)
    writer = SummaryWriter(str(tmp_path))
    writer.add_scalar("train/loss", 1.0, 0)
    writer.close()
    with pytest.raises(ConfigError, match="hold no alpha/ scalars"):
        read_alpha_history(tmp_path)
    with pytest.raises(ConfigError, match="choose labels among: a/e"):
        plot_alpha_evolution({"a/e": {"x": [(0, 1.0)]}}, ["b/e"])
