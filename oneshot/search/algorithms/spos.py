"""SPOS, Single Path One-Shot (Guo et al., 2020): uniform single paths, then a search.

Training: every weight step runs one architecture drawn uniformly from the space's decisions
(:mod:`supernets.decisions`; on the DARTS space, ENAS's two inputs and an operation each per
node), seeded from ``(seed, step)``. There are no architecture parameters.

Validation runs one uniformly drawn architecture per batch, the same ones every epoch (seeded
from the batch index), with each batch's BatchNorm statistics (the running ones mix every path
trained), so ``val/acc`` is the mean accuracy of random paths. Until the search,
:meth:`SposSearch.genotype` is the path with the best batch accuracy of the latest validation.

The search runs at the start of the last epoch's validation: aging evolution or random search
(``search.strategy``) over ``search.cycles`` architectures, each scored by its accuracy on the
first ``search.eval_batches`` validation batches after recomputing the BatchNorm statistics on
``search.calib_batches`` batches of the weight half (normalized, not augmented). Scores are
summed over processes, so every process finds the same best, which becomes the genotype.
TensorBoard: ``search/score`` and ``search/best_score`` per evaluation, ``search/genotype``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any, Mapping

import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from oneshot.search.algorithms.base import Batch, SupernetSearch, WeightOptimizerConfig
from oneshot.search.algorithms.sampling import step_generator
from oneshot.errors import ConfigError
from oneshot.search.strategies import (STRATEGIES, SearchResult, aging_evolution, random_search,
                                       uniform_architecture)
from oneshot.search.strategies.scoring import (correct_predictions, preserved_batchnorm,
                                               recalibrate_batchnorm)
from supernets.decisions import flat_decisions

WEIGHT_STREAM, VALIDATION_STREAM, SEARCH_STREAM = 0, 1, 2


@dataclass(frozen=True)
class SearchConfig:
    """The search after training: strategy, budget, and the data each candidate is scored on.

    ``cycles`` is the number of architectures scored, for both strategies (evolution: the
    first ``population`` drawn uniformly, then tournaments of ``sample_size``).
    ``eval_batches=None`` scores on every validation batch.
    """

    strategy: str
    population: int
    sample_size: int
    cycles: int
    calib_batches: int
    eval_batches: int | None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown algorithm.search.strategy '{self.strategy}'; choose one "
                              f"of: {', '.join(STRATEGIES)}")
        for name, low in (("population", 1), ("sample_size", 1), ("calib_batches", 1),
                          ("eval_batches", 1), ("cycles", self.population)):
            value = getattr(self, name)
            if value is None and name == "eval_batches":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"algorithm.search.{name} must be an integer >= {low}"
                                  f"{' (the population)' if name == 'cycles' else ''}, "
                                  f"got {value!r}")


class SposSearch(SupernetSearch):
    """Supernet trained on uniformly sampled single paths, searched once trained."""

    algorithm_name = "spos"
    ddp_find_unused_parameters = True  # a weight step runs only the sampled operations

    def __init__(self, supernet: nn.Module, *, num_classes: int, seed: int,
                 search: SearchConfig, weight_optimizer: WeightOptimizerConfig) -> None:
        super().__init__(supernet, num_classes=num_classes, weight_optimizer=weight_optimizer,
                         hparams={"seed": seed, "search": asdict(search)})
        self.seed = seed
        self.search_config = search
        self.decisions = flat_decisions(supernet.sampling_decisions())
        self.searched: dict[str, int] | None = None
        self.best_validated: dict[str, int] | None = None
        self._val_counts: list[torch.Tensor] = []

    # -- architectures ------------------------------------------------------------------------
    def sample(self, step: int, stream: int) -> dict[str, int]:
        """The uniformly drawn architecture of ``(seed, step, stream)``."""
        return uniform_architecture(self.decisions, step_generator(self.seed, step, stream))

    def current_choices(self) -> dict[str, int]:
        """The searched architecture, else the latest validation's best path, else the path of
        the first validation batch."""
        if self.searched is not None:
            return self.searched
        if self.best_validated is not None:
            return self.best_validated
        return self.sample(0, VALIDATION_STREAM)

    def genotype(self) -> Any:
        """The genotype of :meth:`current_choices`."""
        return self.supernet.sampled_genotype(self.current_choices())

    def architecture_optimizer(self) -> None:
        """None: SPOS has no architecture parameters."""
        return None

    # -- training and validation --------------------------------------------------------------
    def training_step(self, batch: Mapping[str, Batch], batch_idx: int) -> torch.Tensor:
        arch = self.supernet.sampled_arch(self.sample(self.global_step, WEIGHT_STREAM))
        return self.weight_step(batch["train"], arch, batch_idx)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        logits = self.validation_logits(
            x, self.supernet.sampled_arch(self.sample(batch_idx, VALIDATION_STREAM)))
        self.val_acc(logits, y)
        self.log("val/loss", self.criterion(logits, y), on_epoch=True, sync_dist=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)
        correct = (logits.argmax(dim=-1) == y).sum().float()
        total = torch.tensor(float(len(y)), device=y.device)
        self._val_counts.append(torch.stack([correct, total]))

    def on_validation_epoch_start(self) -> None:
        """Search at the start of the last epoch's validation."""
        self._val_counts = []
        max_epochs = self.trainer.max_epochs
        if (not self.trainer.sanity_checking and max_epochs is not None and max_epochs > 0
                and self.current_epoch + 1 >= max_epochs):
            self.search_architecture()

    def on_validation_epoch_end(self) -> None:
        """Keep the path of the best batch accuracy (batches summed over processes)."""
        if self.trainer.sanity_checking or not self._val_counts:
            return
        counts = self.trainer.strategy.reduce(torch.stack(self._val_counts), reduce_op="sum")
        best = int((counts[:, 0] / counts[:, 1]).argmax())
        self.best_validated = self.sample(best, VALIDATION_STREAM)

    # -- the search ---------------------------------------------------------------------------
    def search_architecture(self) -> dict[str, int]:
        """Run the configured search on the trained supernet; its best becomes the genotype."""
        cfg = self.search_config
        to_device = self.trainer.strategy.batch_to_device
        calibration = [to_device(b) for b in islice(self.trainer.train_dataloader["train"],
                                                    cfg.calib_batches)]
        evaluation = [to_device(b) for b in islice(self.trainer.val_dataloaders, cfg.eval_batches)]
        if not calibration or not evaluation:
            raise ConfigError("the SPOS search needs training and validation batches; lower "
                              "data.batch_size or data.eval_batch_size, or use more data")

        def score(choices: Mapping[str, int]) -> float:
            arch = self.supernet.sampled_arch(choices)
            recalibrate_batchnorm(self.supernet, arch, calibration)
            counts = torch.stack(correct_predictions(self.supernet, arch, evaluation)).float()
            correct, total = self.trainer.strategy.reduce(counts, reduce_op="sum")
            return float(correct / total)

        generator = step_generator(self.seed, self.global_step, SEARCH_STREAM)
        with preserved_batchnorm(self.supernet):
            if cfg.strategy == "evolution":
                result = aging_evolution(self.decisions, score, population=cfg.population,
                                         sample_size=cfg.sample_size, cycles=cfg.cycles,
                                         generator=generator)
            else:
                result = random_search(self.decisions, score, evaluations=cfg.cycles,
                                       generator=generator)
        self.searched = result.best
        self._log_search(result)
        return self.searched

    def on_train_end(self) -> None:
        if self.searched is None:
            rank_zero_warn("SPOS searches in the last epoch's validation, which did not run; "
                           "genotype.json holds the best path of the latest validation")

    # -- checkpoints and logging --------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["spos"] = {"searched": self.searched, "best_validated": self.best_validated}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("spos", {})
        self.searched = state.get("searched")
        self.best_validated = state.get("best_validated")

    def _log_search(self, result: SearchResult) -> None:
        """Every evaluation's score and the best so far (step = evaluation), the best genotype."""
        if not self.trainer.is_global_zero:
            return
        writer = next((logger.experiment for logger in self.loggers
                       if isinstance(logger, TensorBoardLogger)), None)
        if writer is None:
            return
        best = -math.inf
        for step, (_, value) in enumerate(result.history):
            best = max(best, value)
            writer.add_scalar("search/score", value, step)
            writer.add_scalar("search/best_score", best, step)
        writer.add_text("search/genotype", f"`{self.supernet.sampled_genotype(result.best)}`",
                        self.current_epoch)
