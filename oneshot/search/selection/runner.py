"""Run perturbation selection after a search: decide round by round, fine-tune in between, write
``selection.json`` and the final ``genotype.json``, and resume from the last finished round.

Fine-tuning is the algorithm's own ``training_step`` (its architecture step, then its weight
step) under a Lightning ``Trainer`` of its own, with every decision so far applied to the
architecture the supernet runs, the weight learning rate times ``lr_factor`` and held
constant, and whatever depends on the epoch (a Gumbel temperature, a warm-up) as at the
search's last epoch.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import pytorch_lightning as pl
import torch

from oneshot.errors import ConfigError
from oneshot.search.algorithms.base import OneShotSearch
from oneshot.search.selection.perturbation import Batch, decide
from oneshot.search.selection.plan import (SelectionState, Unit, final_rows, plan_rounds,
                                           plan_units, project)
from oneshot.storage.files import save_genotype_file, write_atomic
from oneshot.storage.torchfile import load_weights_only
from supernets.measure import derived_params

SELECTION_FILE = "selection.json"
STATE_FILE = Path("checkpoints") / "selection.ckpt"
WITHOUT_ALPHAS = ("enas", "spos")  # algorithms that search without architecture weights


@dataclass(frozen=True)
class PerturbationConfig:
    """The options of ``selection=perturbation`` (defaults in ``selection/perturbation.yaml``)."""

    tune_epochs: float
    tune_steps: int | None
    eval_batches: int | None
    lr_factor: float
    seed: int


def check_selection(selection: Mapping[str, Any], algorithm: str) -> None:
    """Refuse perturbation selection for a search without alphas, in one line."""
    if selection.get("name") == "perturbation" and algorithm in WITHOUT_ALPHAS:
        raise ConfigError(f"selection=perturbation needs architecture weights, which algorithm "
                          f"'{algorithm}' does not have; use selection=argmax (the default) or an "
                          "algorithm with alphas (darts, gdas, snas, proxyless, ...)")


def check_single_process(world_size: int) -> None:
    """Perturbation selection runs in one process; refuse a distributed search in one line."""
    if world_size > 1:
        raise ConfigError(f"selection=perturbation runs in one process, but this search runs "
                          f"{world_size}; search with trainer.devices=1 and trainer.num_nodes=1")


class _TuningTrainer(pl.Trainer):
    """A Trainer whose module sees the search's last epoch and epoch count while it tunes.

    The view starts with training (:class:`_SearchView`): the fit loop has already taken its
    own limits (none: the fit ends by :class:`StopAfterBatches`) and counts its own epochs.
    """

    def __init__(self, *, search_epoch: int, search_epochs: int, **options: Any) -> None:
        self._search_view: tuple[int, int] | None = None
        self._search = (search_epoch, search_epochs)
        callbacks = [*options.pop("callbacks", []), _SearchView()]
        super().__init__(**options, callbacks=callbacks)

    @property
    def current_epoch(self) -> int:
        view = self._search_view
        return super().current_epoch if view is None else view[0]

    @property
    def max_epochs(self) -> int | None:
        view = self._search_view
        return super().max_epochs if view is None else view[1]


class _SearchView(pl.Callback):
    """Turns on the search's epoch view of a :class:`_TuningTrainer` when training starts."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer._search_view = trainer._search  # type: ignore[attr-defined]


class StopAfterBatches(pl.Callback):
    """Stops a fit after ``batches`` training steps (``max_steps`` counts optimizer steps, of
    which an algorithm with alphas takes two or more per training step)."""

    def __init__(self, batches: int) -> None:
        self.batches = batches
        self.seen = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self.seen += 1
        if self.seen >= self.batches:
            trainer.should_stop = True


@contextlib.contextmanager
def projected_forward(module: OneShotSearch, state: SelectionState) -> Iterator[None]:
    """Inside, every call of ``module.supernet`` runs the architecture it is given with the
    decisions of ``state`` applied (kept in the alphas' graph, with zero gradients)."""
    supernet = module.supernet
    forward = supernet.forward

    def projected(x: torch.Tensor, arch: Mapping[str, Any] | None = None) -> Any:
        return forward(x, None if arch is None else project(supernet, arch, state, connected=True))

    supernet.forward = projected  # type: ignore[method-assign]
    try:
        yield
    finally:
        del supernet.forward


@contextlib.contextmanager
def tuning_learning_rate(module: OneShotSearch, factor: float) -> Iterator[None]:
    """Inside, the weight optimizer a fit builds runs at ``lr * factor``, held constant."""
    original = module.weight_optimizer_config
    lr = original.lr * factor
    module.weight_optimizer_config = replace(original, lr=lr, lr_min=lr)
    try:
        yield
    finally:
        module.weight_optimizer_config = original


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Inside, Lightning's informational messages are not shown (warnings still are)."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logging.WARNING, logger.level))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class PerturbationSelection:
    """Perturbation selection of one search, in its run dir."""

    def __init__(self, module: OneShotSearch, config: PerturbationConfig, *, run_dir: Path,
                 val_batches: Callable[[], Iterable[Batch]],
                 tune: Callable[[int, SelectionState], None], tune_steps: int) -> None:
        self.module = module
        self.config = config
        self.run_dir = Path(run_dir)
        self.val_batches = val_batches
        self.tune = tune
        self.tune_steps = tune_steps
        self.units: dict[str, Unit] = {u.name: u for u in plan_units(module.supernet)}
        self.argmax: Any = None

    # -- state -------------------------------------------------------------------------------
    def initial_state(self) -> SelectionState:
        """A new selection, or the one a stopped run saved after its last finished round
        (``checkpoints/selection.ckpt`` holds the decisions with the weights they go with)."""
        rounds = plan_rounds(list(self.units.values()), self.config.seed)
        record, weights = self.run_dir / SELECTION_FILE, self.run_dir / STATE_FILE
        if weights.is_file():
            saved = load_weights_only(weights)
            state = SelectionState.from_dict(json.loads(saved["state"]))
            self.module.load_state_dict(saved["module"])
        elif record.is_file():
            saved = json.loads(record.read_text(encoding="utf-8"))
            state = SelectionState.from_dict(saved["state"])
            if state.done < len(state.rounds):
                raise ConfigError(f"{record} holds an unfinished selection but {weights} is "
                                  f"missing; move {record.name} away to select again")
        else:
            return SelectionState(rounds=rounds)
        if state.rounds != rounds:
            raise ConfigError(f"the saved selection in {self.run_dir} decides in other rounds "
                              f"(another selection.seed or space); move {record.name} and "
                              f"{weights} away to select again")
        return state

    def _save(self, state: SelectionState, genotype: Any = None) -> None:
        data = {"rule": "perturbation", "options": asdict(self.config),
                "tune_steps": self.tune_steps, "finished": state.done == len(state.rounds),
                "genotype": None if genotype is None else genotype.to_dict(),
                "argmax_genotype": self.argmax.to_dict(),
                "state": state.to_dict()}
        if state.done < len(state.rounds):
            buffer = io.BytesIO()
            torch.save({"module": self.module.state_dict(), "state": json.dumps(state.to_dict())},
                       buffer)
            write_atomic(self.run_dir / STATE_FILE, buffer.getvalue())
        write_atomic(self.run_dir / SELECTION_FILE,
                     (json.dumps(data, indent=2) + "\n").encode("utf-8"))

    # -- the selection -----------------------------------------------------------------------
    def run(self, device: torch.device) -> tuple[Any, SelectionState]:
        """Every round still to do; returns the selected genotype (written to ``selection.json``)
        and the decisions."""
        self.argmax = self.module.genotype()  # the search's own, before any fine-tuning
        state = self.initial_state()
        supernet = self.module.supernet
        while state.done < len(state.rounds):
            r = state.done
            if r > 0 and self.tune_steps > 0:
                self.tune(r, state)
            self.module.to(device)
            for name in state.rounds[r]:
                decide(supernet, self.units[name], state, self.module.arch_weights(),
                       self.val_batches, round_index=r)
            state.done += 1
            if state.done < len(state.rounds):
                self._save(state)
        rows = final_rows(supernet, state, self.module.arch_weights())
        genotype = supernet.derive({k: v.cpu() for k, v in rows.items()})
        self._save(state, genotype)
        (self.run_dir / STATE_FILE).unlink(missing_ok=True)
        return genotype, state


def accuracy_drops(state: SelectionState) -> dict[str, float]:
    """Per operation unit, how much removing its chosen operation lowered the accuracy."""
    return {str(r["unit"]): float(r["drop"]) for r in state.records if r["kind"] == "op"}


def write_selected_genotype(run_dir: Path, space: str, genotype: Any, state: SelectionState,
                            meta: Mapping[str, Any]) -> None:
    """Write ``genotype.json`` as the selected genotype, its meta saying how it was selected."""
    save_genotype_file(run_dir / "genotype.json", space=space, genotype=genotype.to_dict(),
                       meta={**meta, "selection": "perturbation",
                             "accuracy_drops": accuracy_drops(state)})


def tune_steps_of(config: PerturbationConfig, batches_per_epoch: int) -> int:
    """Fine-tuning steps between two rounds: ``tune_steps``, else ``tune_epochs`` epochs."""
    if config.tune_steps is not None:
        return config.tune_steps
    return int(math.ceil(config.tune_epochs * batches_per_epoch))


# -- the search's side: config, data and trainer ------------------------------------------------
def perturbation_config(node: Mapping[str, Any]) -> PerturbationConfig:
    """The ``selection`` config node (without ``name``) as a :class:`PerturbationConfig`."""
    return PerturbationConfig(**{k: v for k, v in node.items() if k != "name"})


def batches_per_epoch(datamodule: Any, limit: int | float | None) -> int:
    """Training batches in one epoch of ``datamodule``, within ``trainer.limit_train_batches``."""
    count = max(len(loader) for loader in datamodule.train_dataloader().iterables.values())
    if limit is None:
        return count
    return min(count, limit) if isinstance(limit, int) else int(count * limit)


def select_by_perturbation(module: OneShotSearch, datamodule: Any, search: pl.Trainer, *,
                           selection: Mapping[str, Any], trainer: Mapping[str, Any],
                           run_dir: Path, space: str, space_options: Mapping[str, Any],
                           benchmark: Any = None) -> Any:
    """Select the genotype of a finished search by perturbation, write ``selection.json`` and
    ``genotype.json`` (the search's meta, with the selected genotype's ``params`` and
    ``benchmark`` row) and return the genotype.

    ``trainer`` is the search's trainer config: fine-tuning runs on its accelerator, devices and
    precision.
    """
    config = perturbation_config(selection)
    device = search.strategy.root_device
    steps = tune_steps_of(config, batches_per_epoch(datamodule, trainer.get("limit_train_batches")))

    def val_batches() -> Iterator[Batch]:
        for i, (x, y) in enumerate(datamodule.val_dataloader()):
            if config.eval_batches is not None and i >= config.eval_batches:
                return
            x = datamodule.evaluate(x.to(device)).contiguous(memory_format=datamodule.memory_format)
            yield x, y.to(device)

    options = {key: trainer[key] for key in ("accelerator", "devices", "precision")
               if trainer.get(key) is not None}
    last_epoch = (max(0, search.current_epoch - 1), search.max_epochs or 1)

    def tune(round_index: int, state: SelectionState) -> None:
        pl.seed_everything((config.seed + round_index) % 2**32, workers=True, verbose=False)
        with quiet_lightning():  # no device banner per round
            tuner = _TuningTrainer(
                search_epoch=last_epoch[0], search_epochs=last_epoch[1], **options, max_epochs=-1,
                limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                use_distributed_sampler=False, callbacks=[StopAfterBatches(steps)])
            with projected_forward(module, state), tuning_learning_rate(module, config.lr_factor):
                tuner.fit(module, datamodule=datamodule)

    selector = PerturbationSelection(module, config, run_dir=run_dir,
                                     val_batches=val_batches, tune=tune, tune_steps=steps)
    genotype, state = selector.run(device)
    written = json.loads((run_dir / "genotype.json").read_text(encoding="utf-8"))["meta"]
    meta = {**written, "params": derived_params(space, genotype, space_options=space_options)}
    if benchmark is not None:
        meta["benchmark"] = benchmark.lookup(str(genotype))
    write_selected_genotype(run_dir, space, genotype, state, meta)
    return genotype
