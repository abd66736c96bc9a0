"""Alpha evolution: each edge's candidate probabilities over the epochs, from TensorBoard events."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from oneshot.errors import ConfigError
from oneshot.storage.files import write_atomic

AlphaHistory = dict[str, dict[str, list[tuple[int, float]]]]
"""``label -> candidate -> [(epoch, probability), ...]``: the alpha/ scalars of a run."""

TAG_PREFIX = "alpha/"


def _natural_key(text: str) -> list[object]:
    """Sort key that orders ``edge_2`` before ``edge_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _events_dir(run_dir: Path) -> Path:
    """The folder holding a run's event files: ``<run_dir>/tensorboard`` or ``run_dir`` itself."""
    for folder in (run_dir / "tensorboard", run_dir):
        if folder.is_dir() and any(folder.glob("events.out.tfevents.*")):
            return folder
    raise ConfigError(f"no TensorBoard events in '{run_dir}' or its tensorboard/ folder; "
                      "point to a run dir written by oneshot.train")


def read_alpha_history(run_dir: str | Path) -> AlphaHistory:
    """The ``alpha/<label>/<candidate>`` scalars of a run (step = epoch), labels in natural order.

    A run resumed from a checkpoint logs some epochs twice; the value logged last is kept.
    """
    accumulator = EventAccumulator(str(_events_dir(Path(run_dir))), size_guidance={"scalars": 0})
    accumulator.Reload()
    history: AlphaHistory = {}
    for tag in accumulator.Tags()["scalars"]:
        if not tag.startswith(TAG_PREFIX) or tag.count("/") < 2:
            continue
        label, candidate = tag[len(TAG_PREFIX):].rsplit("/", 1)
        by_epoch = {event.step: event.value for event in accumulator.Scalars(tag)}
        history.setdefault(label, {})[candidate] = sorted(by_epoch.items())
    if not history:
        raise ConfigError(f"the TensorBoard events of '{run_dir}' hold no alpha/ scalars; "
                          "this run's algorithm logs no architecture weights")
    return {label: history[label] for label in sorted(history, key=_natural_key)}


def alpha_groups(history: AlphaHistory) -> dict[str, list[str]]:
    """Labels grouped by their prefix before the first ``/`` (``normal``, ``reduce``, ...)."""
    groups: dict[str, list[str]] = {}
    for label in history:
        groups.setdefault(label.split("/", 1)[0], []).append(label)
    return groups


def plot_alpha_evolution(history: AlphaHistory, labels: list[str] | None = None, *,
                         title: str = "alpha evolution", columns: int = 5) -> Figure:
    """One panel per edge: each candidate's probability against the epoch, one shared legend."""
    labels = list(history) if labels is None else labels
    unknown = [label for label in labels if label not in history]
    if not labels or unknown:
        raise ConfigError(f"no alpha history for {unknown or 'an empty label list'}; "
                          f"choose labels among: {', '.join(history)}")
    columns = max(1, min(columns, len(labels)))
    rows = math.ceil(len(labels) / columns)
    height = 1.9 * rows + 0.8
    fig = Figure(figsize=(2.6 * columns, height), dpi=90)
    axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    legend: dict[str, object] = {}
    for ax, label in zip(axes, labels):
        for candidate, points in history[label].items():
            epochs, values = zip(*points)
            color = legend[candidate].get_color() if candidate in legend else None
            line, = ax.plot(epochs, values, marker="o", markersize=2.5, linewidth=1.2,
                            color=color, label=candidate)
            legend.setdefault(candidate, line)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[len(labels):]:
        ax.set_visible(False)
    for ax in axes[max(0, len(labels) - columns):len(labels)]:
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_tick_params(labelbottom=True)
    fig.legend(list(legend.values()), list(legend), loc="lower center",
               ncol=min(len(legend), 8), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1))
    return fig


def alpha_figures(history: AlphaHistory) -> dict[str, Figure]:
    """One alpha-evolution figure per group of edges (e.g. the normal and the reduction cell)."""
    return {group: plot_alpha_evolution(history, labels, title=f"{group}: alpha evolution")
            for group, labels in alpha_groups(history).items()}


def save_alpha_plots(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write ``alpha_evolution_<group>.png`` per group into ``out_dir`` (default: the run dir)."""
    target = Path(run_dir if out_dir is None else out_dir)
    paths = []
    for group, fig in alpha_figures(read_alpha_history(run_dir)).items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        path = target / f"alpha_evolution_{group}.png"
        write_atomic(path, buffer.getvalue())
        paths.append(path)
    return paths
