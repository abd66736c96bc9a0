"""Callbacks that show the search (alphas in TensorBoard, genotype files, cell diagrams) and
check that the processes of a distributed search agree on its genotype."""

from __future__ import annotations

import hashlib
import math
import random
import warnings
from pathlib import Path
from typing import Any, Mapping

import graphviz
import numpy as np
import pytorch_lightning as pl
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_info

from oneshot.tables.benchmark import ResultTable
from oneshot.errors import ConfigError, DivergedProcessesError
from oneshot.storage.files import save_genotype_file
from oneshot.render import (GraphvizMissingError, cell_graphs, graph_pixels,
                            write_diagrams)
from supernets.measure import derived_params
from tasks.seeding import derived_seed


def alpha_heatmap(rows: Mapping[str, torch.Tensor], candidates: list[str], title: str) -> np.ndarray:
    """Render choice points x candidates softmax weights as an RGB image (H, W, 3, uint8)."""
    matrix = torch.stack([rows[label] for label in rows]).float().cpu().numpy()
    fig = Figure(figsize=(1.0 + 0.9 * len(candidates), 1.2 + 0.35 * len(rows)), dpi=80)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", vmin=0.0, aspect="auto")
    ax.set_xticks(range(len(candidates)), candidates, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [label.split("/", 1)[-1] for label in rows], fontsize=8)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color="white")
    ax.set_title(title)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _tensorboard(trainer: pl.Trainer) -> Any:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class EpochSeed(pl.Callback):
    """Reseed the global random generators at the start of every epoch from (seed, epoch, rank).

    Augmentation draws from the global generators; tying their state to the epoch makes a search
    resumed from an end-of-epoch checkpoint repeat exactly what an uninterrupted search does.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch_seed = derived_seed(self.seed, trainer.current_epoch, trainer.global_rank)
        random.seed(epoch_seed)
        np.random.seed(epoch_seed)
        torch.manual_seed(epoch_seed)


class AlphaLogger(pl.Callback):
    """Each epoch: every alpha's softmax as a scalar, a heatmap per cell type, the genotype text.

    Scalar tags are ``alpha/<label>/<candidate>`` (e.g. ``alpha/normal/edge_3/sep_conv_3x3``),
    images ``alpha_heatmap/<group>``, text ``genotype``; the TensorBoard step is the epoch.
    A search without alphas (no ``arch`` attribute, e.g. ENAS) gets only the genotype text.
    """

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        writer = _tensorboard(trainer)
        if writer is None or not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        if hasattr(pl_module, "arch"):
            self._log_alphas(writer, pl_module, epoch)
        writer.add_text("genotype", f"`{pl_module.genotype()}`", epoch)

    @staticmethod
    def _log_alphas(writer: Any, pl_module: pl.LightningModule, epoch: int) -> None:
        weights = pl_module.arch_weights()
        candidates = pl_module.arch.candidates
        for label, row in weights.items():
            for name, value in zip(candidates[label], row.tolist()):
                writer.add_scalar(f"alpha/{label}/{name}", value, epoch)
        for group, labels in pl_module.arch.groups().items():
            names = candidates[labels[0]]
            if all(candidates[label] == names for label in labels):
                image = alpha_heatmap({label: weights[label] for label in labels}, names,
                                      f"{group} (epoch {epoch})")
                writer.add_image(f"alpha_heatmap/{group}", image, epoch, dataformats="HWC")


class SkipConnectEarlyStop(pl.Callback):
    """Stop the search once the derived normal cell holds ``limit`` skip connections.

    The DARTS+ criterion (Liang et al., 2019): a search that keeps going after this point collapses
    into parameter-free cells. The genotype of the stopping epoch becomes ``genotype.json``.
    """

    def __init__(self, limit: int, *, space: str) -> None:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1 or space != "darts":
            raise ConfigError(f"early_stop.skip_connect must be a positive integer on space=darts (the "
                              f"normal cell's skip connections), got {limit!r} on space={space}")
        self.limit = limit

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        count = sum(op == "skip_connect" for op, _ in pl_module.genotype().normal)
        if count >= self.limit:
            rank_zero_info(f"early stop after epoch {trainer.current_epoch}: the normal cell has "
                           f"{count} skip connections (early_stop.skip_connect={self.limit})")
            trainer.should_stop = True


def genotype_hash(genotype: Any) -> int:
    """A 63-bit hash of the genotype's text, the same in every process (unlike ``hash``)."""
    digest = hashlib.sha256(str(genotype).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class GenotypeAgreement(pl.Callback):
    """At the end of every epoch of a multi-process search, stop unless every process derives
    the same genotype: the hashes of the genotype texts (one integer per process) are
    all-gathered and compared with rank 0's."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size < 2:
            return
        local = torch.tensor([genotype_hash(pl_module.genotype())], dtype=torch.long,
                             device=pl_module.device)
        hashes = trainer.strategy.all_gather(local).reshape(-1).tolist()
        differing = [str(rank) for rank, value in enumerate(hashes) if value != hashes[0]]
        if differing:
            ranks = (f"ranks {', '.join(differing)} differ" if len(differing) > 1
                     else f"rank {differing[0]} differs")
            raise DivergedProcessesError(
                f"the {len(hashes)} processes derived different genotypes at the end of epoch "
                f"{trainer.current_epoch} ({ranks} from rank 0), so their architecture states "
                "diverged; search on one process (trainer.devices=1) and report this with the "
                "run's config.yaml")


class GenotypeWriter(pl.Callback):
    """Writes ``genotypes/epoch_NNN.json`` each epoch and ``genotype.json`` when the search ends.

    The checkpoint also carries the space name, the candidates and the genotype, so that
    ``oneshot.export`` can read a checkpoint without the config. With a ``benchmark`` table, the
    meta's ``benchmark`` holds the genotype's row of results (``null`` when the table lacks it).
    """

    def __init__(self, run_dir: Path, *, space: str, meta: Mapping[str, Any],
                 benchmark: ResultTable | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.space = space
        self.meta = dict(meta)
        self.benchmark = benchmark
        self._param_counts: dict[str, int] = {}

    def _meta(self, trainer: pl.Trainer) -> dict[str, Any]:
        value = trainer.callback_metrics.get("val/acc")
        val_acc = float(value) if value is not None else None
        if val_acc is not None and math.isnan(val_acc):
            val_acc = None
        return {**self.meta, "epoch": trainer.current_epoch, "val_acc": val_acc,
                "world_size": trainer.world_size}

    def _params(self, genotype: Any) -> dict[str, int]:
        """``params``: the size of the network the genotype is retrained as, at its defaults."""
        key = str(genotype)
        if key not in self._param_counts:
            self._param_counts[key] = derived_params(
                self.space, genotype, space_options=self.meta.get("space_options"))
        return {"params": self._param_counts[key]}

    def _benchmark(self, genotype: Any) -> dict[str, Any]:
        """``benchmark``: the genotype's results in the benchmark table, if one is given."""
        return {} if self.benchmark is None else {"benchmark": self.benchmark.lookup(str(genotype))}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        path = self.run_dir / "genotypes" / f"epoch_{trainer.current_epoch:03d}.json"
        genotype = pl_module.genotype()
        save_genotype_file(path, space=self.space, genotype=genotype.to_dict(),
                           meta={**self._meta(trainer), **self._params(genotype),
                                 **self._benchmark(genotype)})

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        genotype = pl_module.genotype()
        meta = {**self._meta(trainer), "epoch": max(0, trainer.current_epoch - 1),
                **self._params(genotype), **self._benchmark(genotype)}
        save_genotype_file(self.run_dir / "genotype.json", space=self.space,
                           genotype=genotype.to_dict(), meta=meta)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["oneshot"] = {
            "space": self.space,
            "candidates": pl_module.supernet.choice_points(),
            "genotype": pl_module.genotype().to_dict(),
            "meta": self._meta(trainer),
        }


class BenchmarkLogger(pl.Callback):
    """Each epoch: the genotype's results in a benchmark table as ``benchmark/<column>`` scalars
    (step = epoch). A genotype the table lacks gets one warning and no values."""

    def __init__(self, table: ResultTable) -> None:
        self.table = table
        self._warned: set[str] = set()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        arch = str(pl_module.genotype())
        results = self.table.lookup(arch)
        if results is None:
            if arch not in self._warned:
                warnings.warn(self.table.missing_message(arch), stacklevel=2)
                self._warned.add(arch)
            return
        writer = _tensorboard(trainer)
        if writer is not None:
            for column, value in results.items():
                if value is not None:
                    writer.add_scalar(f"benchmark/{column}", value, trainer.current_epoch)


class CellDiagramWriter(pl.Callback):
    """Each epoch: cell diagrams of the genotype in ``diagrams/`` and in TensorBoard.

    Files are ``diagrams/epoch_NNN_<cell>.svg``, images ``cell/<cell>`` (step = epoch), so
    scrubbing the epochs in TensorBoard shows the cells change. Without Graphviz's ``dot``
    program it writes the dot source, ``diagrams/epoch_NNN_<cell>.dot``, and no images, with one
    warning; drawing never stops a search. A space without a registered renderer
    (``oneshot.render.register_renderer``) gets the generic drawing of its choices.
    """

    def __init__(self, run_dir: Path, *, space: str) -> None:
        self.run_dir = Path(run_dir)
        self.space = space
        self._warned = False

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            warnings.warn(message, stacklevel=2)
            self._warned = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        graphs = cell_graphs(self.space, pl_module.genotype())
        for cell, graph in graphs.items():
            graph.attr(label=f"{graph.graph_attr.get('label', cell)}, epoch {epoch}")
        folder, prefix = self.run_dir / "diagrams", f"epoch_{epoch:03d}_"
        try:
            write_diagrams(graphs, folder, "svg", prefix=prefix)
            images = {cell: graph_pixels(graph) for cell, graph in graphs.items()}
        except (GraphvizMissingError, graphviz.CalledProcessError) as err:
            write_diagrams(graphs, folder, "dot", prefix=prefix)
            self._warn_once(f"cell diagrams are written as dot source (.dot), without TensorBoard "
                            f"images: {err}")
            return
        writer = _tensorboard(trainer)
        if writer is not None:
            for cell, image in images.items():
                writer.add_image(f"cell/{cell}", image, epoch, dataformats="HWC")
