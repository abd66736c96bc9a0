"""The type and allowed range of every config option, declared once and checked before a run.

The YAML files under ``oneshot/conf`` declare each option with its default and meaning; the
tables here declare which values it may take, one table per option of each config group (each
``task``, ``space`` and ``algorithm``) and one per entry point for its own keys (``data``,
``trainer``, ...). :func:`check_options` checks a composed config against them before Hydra
makes a run dir or any data is read, so a bad value stops with one line naming the option.

This module imports neither torch nor Lightning, so the check runs before either is loaded. The
names of candidate operations and the relations between options (a DARTS cell concatenating at
most ``steps`` nodes, an SPOS search scoring at least its population) are checked by the
classes the options build.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf

from oneshot.errors import ConfigError

SEED_MAX = 2**32 - 1  # the largest seed numpy (and so Lightning) accepts


@dataclass(frozen=True)
class Option:
    """The values one option may take.

    ``kind`` is ``int``, ``float`` (integers accepted), ``bool``, ``str``, ``list`` (each item
    an ``item``; ``length`` items, or any non-empty list) or ``object`` (only ``choices`` or
    ``alternatives`` decide). ``low``/``high`` bound numbers (excluded with ``open_low`` /
    ``open_high``); ``null`` allows ``None``; ``noun`` names the value in messages.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[Any, ...] = ()
    alternatives: tuple[Option, ...] = ()
    item: Option | None = None
    length: int | None = None
    null: bool = False
    noun: str = ""

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` (a plain Python value, lists as lists) is allowed."""
        if value is None:
            return self.null
        if self.alternatives:
            return any(option.accepts(value) for option in self.alternatives)
        if self.choices:
            return any(type(value) is type(choice) and value == choice for choice in self.choices)
        if self.kind is list:
            return (isinstance(value, (list, tuple)) and self.item is not None
                    and (len(value) == self.length if self.length is not None else len(value) > 0)
                    and all(self.item.accepts(v) for v in value))
        if self.kind is float:
            return (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value) and self._in_range(value))
        if self.kind is int:
            return isinstance(value, int) and not isinstance(value, bool) and self._in_range(value)
        return isinstance(value, self.kind)

    def _in_range(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def describe(self) -> str:
        """What the option must be, e.g. ``a positive integer or null``."""
        text = self.noun or self._describe_kind()
        return f"{text} or null" if self.null else text

    def _describe_kind(self) -> str:
        if self.alternatives:
            parts = [option.describe() for option in self.alternatives]
            return ", ".join(parts[:-1]) + " or " + parts[-1]
        if self.choices:
            return "one of: " + ", ".join(dict.fromkeys(_show(choice) for choice in self.choices))
        if self.kind is list and self.item is not None:
            size = f"a list of {self.length} items" if self.length else "a non-empty list"
            return f"{size}, each {self.item.describe()}"
        if self.kind in (int, float):
            return self._describe_range("integer" if self.kind is int else "number")
        return {bool: "true or false", str: "a string"}.get(self.kind, self.kind.__name__)

    def _describe_range(self, noun: str) -> str:
        low, high = self.low, self.high
        article = "an" if noun[0] in "aeiou" else "a"
        if low is None and high is None:
            return f"{article} {noun}"
        if high is None:
            if ((self.kind is int and low == 1 and not self.open_low)
                    or (self.kind is float and low == 0 and self.open_low)):
                return f"a positive {noun}"
            return f"{article} {noun} {'>' if self.open_low else '>='} {_show(low)}"
        if low is None:
            return f"{article} {noun} {'<' if self.open_high else '<='} {_show(high)}"
        return (f"{article} {noun} in {'(' if self.open_low else '['}{_show(low)}, "
                f"{_show(high)}{')' if self.open_high else ']'}")


def _show(value: Any) -> str:
    """``value`` as written on the command line: ``null``, ``true``, a name, a number, a list."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


def integer(low: int | None = None, high: int | None = None, *, null: bool = False) -> Option:
    """An integer in ``[low, high]`` (either bound may be left out)."""
    return Option(int, low=low, high=high, null=null)


def number(low: float | None = None, high: float | None = None, *, above: float | None = None,
           below: float | None = None, null: bool = False, noun: str = "") -> Option:
    """A finite number in ``[low, high]``; ``above``/``below`` are bounds that are excluded."""
    return Option(float, low=above if above is not None else low,
                  high=below if below is not None else high,
                  open_low=above is not None, open_high=below is not None, null=null, noun=noun)


def boolean(*, null: bool = False) -> Option:
    """``true`` or ``false``."""
    return Option(bool, null=null)


def text(*choices: str, null: bool = False) -> Option:
    """A string; with ``choices``, one of them."""
    return Option(str, choices=choices, null=null)


def path(*, null: bool = False, noun: str = "a path") -> Option:
    """A file or directory path."""
    return Option(str, null=null, noun=noun)


def listing(item: Option, *, length: int | None = None, null: bool = False) -> Option:
    """A list of ``length`` items (any non-empty list for ``None``), each allowed by ``item``."""
    return Option(list, item=item, length=length, null=null)


def any_of(*alternatives: Option, null: bool = False, noun: str = "") -> Option:
    """A value that one of ``alternatives`` allows."""
    return Option(object, alternatives=alternatives, null=null, noun=noun)


Table = Mapping[str, Option]
"""Option name (dotted below a group's node, e.g. ``weight_optimizer.lr``) -> allowed values."""

PROBABILITY = number(0, below=1)


def _prefixed(prefix: str, table: Table) -> dict[str, Option]:
    return {f"{prefix}.{key}": option for key, option in table.items()}


# --- task group: oneshot/conf/task/*.yaml -------------------------------------------------------

SUBSET = integer(2, null=True)
SUBSETS: Table = {"subset": SUBSET, "subset_at_most": SUBSET}
CIFAR: Table = {"root": path(), "download": boolean(), **SUBSETS,
                "allow_empty_classes": boolean()}
TASKS: dict[str, Table] = {
    "cifar10": CIFAR,
    "cifar100": CIFAR,
    "imagefolder": {"root": path(null=True), "image_size": integer(1),
                    "train_crop": text("pad", "random_resized"),
                    "test_fraction": number(above=0, below=1), "split_seed": integer(0, SEED_MAX),
                    "mean": listing(number(), length=3, null=True),
                    "std": listing(number(above=0), length=3, null=True),
                    "memory_budget_gb": number(0, null=True), "workers": integer(0, null=True),
                    "cache_dir": path(null=True), **SUBSETS},
    "imagenet16": {"root": path(), "num_classes": integer(1, 1000), **SUBSETS},
    "synthetic": {"num_train": integer(1), "num_test": integer(1), "num_classes": integer(2),
                  "image_size": integer(1), **SUBSETS},
}

# --- space group: oneshot/conf/search/space/*.yaml ----------------------------------------------

CANDIDATES = listing(text())
RECOMPUTE = text("none", "weighted", "edge", "cell")  # supernets.recompute.RECOMPUTE_MODES, without torch
SPACES: dict[str, Table] = {
    "darts": {"channels": integer(1), "layers": integer(3), "steps": integer(1),
              "multiplier": integer(1), "stem_multiplier": integer(1), "candidates": CANDIDATES,
              "max_skip_connect": integer(0, null=True), "recompute": RECOMPUTE},
    "nb201": {"channels": integer(1), "layers": integer(1), "candidates": CANDIDATES,
              "recompute": RECOMPUTE},
    "proxyless": {"stem_channels": integer(1), "stem_stride": integer(1, 2),
                  "first_channels": integer(1),
                  "widths": listing(integer(1)), "depths": listing(integer(1)),
                  "strides": listing(integer(1, 2)), "head_channels": integer(1),
                  "kernel_sizes": listing(integer(1)), "expansions": listing(integer(1)),
                  "zero": boolean()},
}

# --- algorithm group: oneshot/conf/search/algorithm/*.yaml --------------------------------------

SEED = integer(0, SEED_MAX)
BETAS = listing(PROBABILITY, length=2)
WEIGHT_OPTIMIZER: Table = {"lr": number(above=0), "momentum": PROBABILITY,
                           "weight_decay": number(0), "lr_min": number(0),
                           "grad_clip": number(above=0)}
ARCH_OPTIMIZER: Table = {"lr": number(above=0), "betas": BETAS, "weight_decay": number(0)}
ALPHAS: Table = {"alpha_init_std": number(0), **_prefixed("weight_optimizer", WEIGHT_OPTIMIZER),
                 **_prefixed("arch_optimizer", ARCH_OPTIMIZER)}
REGULARIZATION: Table = {"regularization": text("none", "beta"), "beta_weight": number(0)}
"""algorithm.regularization: every algorithm whose architecture weights are softmax(alpha)."""
GUMBEL: Table = {"seed": SEED, "tau_max": number(above=0), "tau_min": number(above=0),
                 "tau_schedule": text("linear", "exponential"), "auxiliary_skip": boolean(),
                 **ALPHAS, **REGULARIZATION}
ALGORITHMS: dict[str, Table] = {
    "darts": {"unrolled": boolean(), "auxiliary_skip": boolean(), **ALPHAS, **REGULARIZATION},
    "sdarts": {"seed": SEED, "perturbation": text("random", "adversarial"),
               "epsilon_start": number(0), "epsilon": number(0), "attack_steps": integer(1),
               "unrolled": boolean(), "auxiliary_skip": boolean(), **ALPHAS, **REGULARIZATION},
    "gdas": {**GUMBEL, "warmup_epochs": integer(0), "estimator": text("reference", "dense")},
    "snas": GUMBEL,
    "pcdarts": {"partial_channels": integer(1), "edge_normalization": boolean(),
                "warmup_epochs": integer(0), "auxiliary_skip": boolean(), **ALPHAS,
                **REGULARIZATION},
    "proxyless": {"seed": SEED, **ALPHAS, **REGULARIZATION, "latency.table": path(null=True),
                  "latency.target_ms": number(above=0, null=True),
                  "latency.target_mflops": number(above=0, null=True),
                  "latency.form": text("add", "mul_log"), "latency.weight": number(0),
                  "latency.beta": number(0)},
    "drnas": {"seed": SEED, "kl_weight": number(0), "prior": number(above=0),
              "progressive": Option(object, choices=("auto", True, False)), "keep": integer(2),
              "warmup": number(0, below=1, noun="a fraction in [0, 1)"), **ALPHAS},
    "enas": {"seed": SEED, "controller_steps": integer(0), "derive_samples": integer(1),
             "derive_batches": integer(1), "controller.hidden_size": integer(1),
             "controller.temperature": number(above=0, null=True),
             "controller.tanh_constant": number(above=0, null=True),
             "controller.entropy_weight": number(0), "controller.baseline_decay": PROBABILITY,
             "controller.lr": number(above=0), "controller.betas": BETAS,
             "controller.eps": number(above=0),
             **_prefixed("weight_optimizer", WEIGHT_OPTIMIZER)},
    "spos": {"seed": SEED, "search.strategy": text("evolution", "random"),
             "search.population": integer(1), "search.sample_size": integer(1),
             "search.cycles": integer(1), "search.calib_batches": integer(1),
             "search.eval_batches": integer(1, null=True),
             **_prefixed("weight_optimizer", WEIGHT_OPTIMIZER)},
}

# --- selection group: oneshot/conf/search/selection/*.yaml --------------------------------------

SELECTIONS: dict[str, Table] = {
    "argmax": {},
    "perturbation": {"tune_epochs": number(0), "tune_steps": integer(0, null=True),
                     "eval_batches": integer(1, null=True), "lr_factor": number(above=0),
                     "seed": SEED},
}

GROUPS: dict[str, dict[str, Table]] = {"task": TASKS, "space": SPACES, "algorithm": ALGORITHMS,
                                       "selection": SELECTIONS}

# --- the entry points' own keys: conf/search/train.yaml, conf/retrain/retrain.yaml, ... ---------

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
PRECISIONS = (16, 32, 64, "16", "32", "64", "bf16", "16-true", "16-mixed", "bf16-true",
              "bf16-mixed", "32-true", "64-true", "transformer-engine",
              "transformer-engine-float16")
BATCH_LIMIT = any_of(integer(0), number(0, 1), null=True,
                     noun="an integer >= 0 (batches), a number in [0, 1] (a fraction)")
TRAINER: Table = {
    "accelerator": text(*ACCELERATORS),
    "devices": any_of(integer(1), Option(object, choices=(-1, "auto")), listing(integer(0)),
                      noun="a positive integer, -1 (every device), auto, or a list of device "
                           "indices"),
    "strategy": text(),
    "num_nodes": integer(1),
    "precision": Option(object, choices=PRECISIONS),
    "max_epochs": integer(1),
    "log_every_n_steps": integer(1),
    "limit_train_batches": BATCH_LIMIT,
    "limit_val_batches": BATCH_LIMIT,
    "limit_test_batches": BATCH_LIMIT,
    "enable_progress_bar": boolean(),
    "gradient_clip_val": number(0, null=True),
    "check_val_every_n_epoch": integer(1, null=True),
}
"""Trainer options in the YAML files; others added with ``+trainer.NAME=...`` go to Lightning."""


@dataclass(frozen=True)
class EntrySchema:
    """The options of one entry point's config: its own keys and its config groups."""

    options: Table
    groups: tuple[str, ...]


SEARCH = EntrySchema(groups=("task", "space", "algorithm", "selection"), options={
    "seed": SEED, "run_dir": path(null=True), "resume": path(null=True),
    "threads": integer(1, null=True),
    "benchmark.table": path(null=True), "benchmark.arch_column": text(),
    "benchmark.columns": listing(text(), null=True),
    "benchmark.nats": path(null=True),
    "early_stop.skip_connect": integer(1, null=True),
    "checkpoint.every_n_steps": integer(1, null=True),
    "checkpoint.every_minutes": number(above=0, null=True),
    "data.batch_size": integer(1), "data.eval_batch_size": integer(1),
    "data.channels_last": boolean(),
    **_prefixed("trainer", TRAINER)})

RETRAIN = EntrySchema(groups=("task",), options={
    "genotype": path(noun="a path or a published genotype name"), "seed": SEED,
    "run_dir": path(null=True),
    "network.channels": integer(1, null=True), "network.layers": integer(1, null=True),
    "network.auxiliary": boolean(null=True),
    "optimizer.lr": number(above=0), "optimizer.momentum": PROBABILITY,
    "optimizer.weight_decay": number(0), "optimizer.lr_min": number(0),
    "training.auxiliary_weight": number(0),
    "training.drop_path": number(0, below=1, noun="a probability in [0, 1)"),
    "training.channels_last": boolean(), "training.compile": boolean(),
    "data.batch_size": integer(1), "data.eval_batch_size": integer(1),
    "data.cutout": integer(0),
    **_prefixed("trainer", TRAINER)})

LATENCY = EntrySchema(groups=("space",), options={
    "out": path(), "device": text("auto", "cpu", "cuda"), "batch_size": integer(1),
    "image_size": integer(1), "warmup": integer(0), "repeats": integer(1),
    "threads": integer(1, null=True), "model": path(null=True)})

ENTRY_POINTS: dict[str, EntrySchema] = {"train": SEARCH, "retrain": RETRAIN, "latency": LATENCY}
"""Each entry point's schema, by the name of its config (``train.yaml``, ...)."""

_ABSENT = object()


def _value(cfg: DictConfig, key: str) -> Any:
    """The resolved plain value of dotted ``key`` in ``cfg``; ``_ABSENT`` if unset or missing."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if not isinstance(parent, DictConfig) or leaf not in parent or OmegaConf.is_missing(parent, leaf):
        return _ABSENT
    value = parent[leaf]
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def check_value(key: str, option: Option, value: Any) -> None:
    """Raise a one-line ConfigError naming ``key`` unless ``option`` allows ``value``."""
    if not option.accepts(value):
        shown = repr(value) if isinstance(value, str) else _show(value)
        raise ConfigError(f"{key} must be {option.describe()}, got {shown}")


def options_of(cfg: DictConfig, entry: str) -> dict[str, Option]:
    """Every option of entry point ``entry``'s config ``cfg`` (its own, then its groups' chosen
    options, e.g. ``space.channels`` for ``space=darts``), as full dotted key -> Option."""
    schema = ENTRY_POINTS[entry]
    options = dict(schema.options)
    for group in schema.groups:
        name = _value(cfg, f"{group}.name")
        options.update(_prefixed(group, GROUPS[group].get(name, {}) if isinstance(name, str) else {}))
    return options


def check_options(cfg: DictConfig, entry: str) -> None:
    """Check every option of ``cfg`` (the config of entry point ``entry``: ``train``,
    ``retrain`` or ``latency``) that the schema lists; the first bad one raises ConfigError.

    Keys the schema does not list (``+trainer.NAME=...``) are left to the code they reach.
    """
    for key, option in options_of(cfg, entry).items():
        value = _value(cfg, key)
        if value is not _ABSENT:
            check_value(key, option, value)
