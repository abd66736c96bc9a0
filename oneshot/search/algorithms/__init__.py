"""The search algorithms, each a LightningModule built from its config node by name."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Mapping

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from torch import nn

from oneshot.search.algorithms.base import ArchOptimizerConfig, WeightOptimizerConfig
from oneshot.search.algorithms.darts import DartsSearch
from oneshot.search.algorithms.drnas import DrnasSearch
from oneshot.search.algorithms.enas import ControllerConfig, EnasSearch
from oneshot.search.algorithms.gumbel import GdasSearch, SnasSearch
from oneshot.search.algorithms.pcdarts import PcDartsSearch, pcdarts_space_options
from oneshot.search.algorithms.proxyless import LatencyConfig, ProxylessSearch
from oneshot.search.algorithms.sdarts import SdartsSearch
from oneshot.search.algorithms.spos import SearchConfig, SposSearch
from oneshot.search.regularization import pop_regularization
from oneshot.tables.cost import check_measured_for, load_cost_table
from oneshot.errors import ConfigError


Builder = Callable[[nn.Module, int, dict[str, Any]], pl.LightningModule]


def _builder(module: type[pl.LightningModule], /, **nodes: type) -> Builder:
    """Build ``module`` from every one of its options: each node named in ``nodes`` becomes
    that config class, the other options are keyword arguments."""
    def build(supernet: nn.Module, num_classes: int, cfg: dict[str, Any]) -> pl.LightningModule:
        options = dict(cfg)
        given = {key: options[key] for key in ("regularization", "beta_weight") if key in options}
        regularization = pop_regularization(options)
        configs = {key: config(**options.pop(key)) for key, config in nodes.items()}
        search = module(supernet, num_classes=num_classes, **configs, **options)
        if regularization is not None:
            if not getattr(search, "softmax_alphas", False):
                raise ConfigError(f"algorithm.regularization applies to architecture weights that "
                                  f"are softmax(alpha); algorithm '{search.algorithm_name}' has none, "
                                  "set algorithm.regularization=none")
            search.arch_regularization = regularization
        search.hparams.update(given)
        return search
    return build


_OPTIMIZERS = {"weight_optimizer": WeightOptimizerConfig, "arch_optimizer": ArchOptimizerConfig}


def _no_space_options(space: type, options: Mapping[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class AlgorithmSpec:
    """How to build an algorithm, and the shipped search spaces it is documented and tested on.

    ``space_options(space_class, options)`` gives the constructor options the algorithm adds to
    the space's (pcdarts: ``partial_channels``); they are not the space's options, so the fixed
    network of a genotype is built without them.
    """

    build: Builder
    spaces: tuple[str, ...]
    space_options: Callable[[type, Mapping[str, Any]], dict[str, Any]] = _no_space_options


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "darts": AlgorithmSpec(_builder(DartsSearch, **_OPTIMIZERS), ("darts", "nb201")),
    "drnas": AlgorithmSpec(_builder(DrnasSearch, **_OPTIMIZERS), ("darts", "nb201")),
    "enas": AlgorithmSpec(_builder(EnasSearch, controller=ControllerConfig,
                                   weight_optimizer=WeightOptimizerConfig), ("darts", "proxyless")),
    "gdas": AlgorithmSpec(_builder(GdasSearch, **_OPTIMIZERS), ("darts", "nb201")),
    "pcdarts": AlgorithmSpec(_builder(PcDartsSearch, **_OPTIMIZERS), ("darts", "nb201"),
                             pcdarts_space_options),
    "sdarts": AlgorithmSpec(_builder(SdartsSearch, **_OPTIMIZERS), ("darts", "nb201")),
    "snas": AlgorithmSpec(_builder(SnasSearch, **_OPTIMIZERS), ("darts", "nb201")),
    "proxyless": AlgorithmSpec(_builder(ProxylessSearch, latency=LatencyConfig, **_OPTIMIZERS),
                               ("proxyless", "darts")),
    "spos": AlgorithmSpec(_builder(SposSearch, search=SearchConfig,
                                   weight_optimizer=WeightOptimizerConfig), ("darts", "nb201")),
}


def list_algorithms() -> list[str]:
    """Names of the registered search algorithms."""
    return sorted(ALGORITHMS)


def supported_spaces(name: str) -> tuple[str, ...]:
    """The shipped spaces algorithm ``name`` supports (the README's algorithm table)."""
    _check_known(name)
    return ALGORITHMS[name].spaces


def shipped_spaces() -> list[str]:
    """Every space some algorithm declares; spaces a user registers are not among them."""
    return sorted({space for spec in ALGORITHMS.values() for space in spec.spaces})


def check_supported(algorithm: str, space: str) -> None:
    """Refuse a shipped space that ``algorithm`` does not declare, in one line.

    A space registered by the user (not shipped) is the user's to pair with any algorithm.
    """
    spaces = supported_spaces(algorithm)
    if space in shipped_spaces() and space not in spaces:
        others = [name for name in list_algorithms() if space in ALGORITHMS[name].spaces]
        raise ConfigError(f"algorithm '{algorithm}' does not support space '{space}'; supported "
                          f"spaces: {', '.join(spaces)} (for space={space} choose algorithm= one "
                          f"of: {', '.join(others)})")


def check_search_setup(cfg: DictConfig) -> None:
    """Refuse what the composed search config cannot run, before any data is read: an
    algorithm on a shipped space it does not support, a latency table measured for other
    space options (its image shape is checked on the first batch)."""
    check_supported(cfg.algorithm.name, cfg.space.name)
    latency = cfg.algorithm.get("latency")
    path = latency.get("table") if isinstance(latency, DictConfig) else None
    if path is not None:
        options = {k: v for k, v in OmegaConf.to_container(cfg.space, resolve=True).items()
                   if k != "name"}
        check_measured_for(load_cost_table(path), path, space=cfg.space.name, options=options)


def algorithm_defaults(name: str) -> dict[str, Any]:
    """Every option of algorithm ``name`` (without ``name``) at its default.

    The one place the defaults are declared is the algorithm's YAML file,
    ``oneshot/conf/search/algorithm/<name>.yaml``, which the command line reads too; its
    interpolations (``seed: ${seed}``) take the search config's (``train.yaml``) defaults.
    """
    _check_known(name)
    conf = resources.files("oneshot.conf.search")
    root = OmegaConf.create((conf / "train.yaml").read_text(encoding="utf-8"))
    node = (conf / "algorithm" / f"{name}.yaml").read_text(encoding="utf-8")
    root.algorithm = OmegaConf.create(node)
    options = OmegaConf.to_container(root.algorithm, resolve=True)
    return {key: value for key, value in options.items() if key != "name"}


def _merged(defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` with ``given`` on top, nested nodes merged key by key."""
    merged = dict(defaults)
    for key, value in given.items():
        base = merged.get(key)
        both = isinstance(base, Mapping) and isinstance(value, Mapping)
        merged[key] = _merged(base, value) if both else value
    return merged


def create_algorithm(name: str, supernet: nn.Module, *, num_classes: int,
                     cfg: Mapping[str, Any]) -> pl.LightningModule:
    """Build algorithm ``name`` around ``supernet`` from its config node (without ``name``).

    Every option ``cfg`` leaves out (nested ones included) takes its default from
    :func:`algorithm_defaults`, so ``cfg={}`` trains as the command line does by default.
    """
    options = _merged(algorithm_defaults(name), cfg)
    try:
        return ALGORITHMS[name].build(supernet, num_classes, options)
    except TypeError as err:
        raise ConfigError(f"bad option for algorithm '{name}': {err}") from None


def algorithm_space_options(name: str, space: type, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor options algorithm ``name``, configured by ``cfg`` (defaults filled in),
    adds to those of the space class ``space`` (pcdarts: ``partial_channels``)."""
    _check_known(name)
    return ALGORITHMS[name].space_options(space, _merged(algorithm_defaults(name), cfg))


def _check_known(name: str) -> None:
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm '{name}'; choose one of: {', '.join(list_algorithms())}")
