"""The search algorithms, each a LightningModule built from its config node by name."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from torch import nn

from oneshot.algorithms.base import ArchOptimizerConfig, WeightOptimizerConfig
from oneshot.algorithms.darts import DartsSearch
from oneshot.algorithms.enas import ControllerConfig, EnasSearch
from oneshot.algorithms.gumbel import GdasSearch, GumbelSearch, SnasSearch
from oneshot.algorithms.proxyless import PROXYLESS_ARCH_OPTIMIZER, LatencyConfig, ProxylessSearch
from oneshot.algorithms.spos import SearchConfig, SposSearch
from oneshot.cost_table import check_measured_for, load_cost_table
from oneshot.errors import ConfigError


def _build_darts(supernet: nn.Module, num_classes: int, cfg: dict[str, Any]) -> pl.LightningModule:
    return DartsSearch(
        supernet, num_classes=num_classes, unrolled=bool(cfg.get("unrolled", False)),
        weight_optimizer=WeightOptimizerConfig(**cfg.get("weight_optimizer", {})),
        arch_optimizer=ArchOptimizerConfig(**cfg.get("arch_optimizer", {})),
        alpha_init_std=float(cfg.get("alpha_init_std", 1e-3)))


def _build_proxyless(supernet: nn.Module, num_classes: int, cfg: dict[str, Any]) -> pl.LightningModule:
    arch = {**asdict(PROXYLESS_ARCH_OPTIMIZER), **cfg.get("arch_optimizer", {})}
    return ProxylessSearch(
        supernet, num_classes=num_classes, seed=int(cfg.get("seed", 0)),
        latency=LatencyConfig(**cfg.get("latency", {})),
        weight_optimizer=WeightOptimizerConfig(**cfg.get("weight_optimizer", {})),
        arch_optimizer=ArchOptimizerConfig(**arch),
        alpha_init_std=float(cfg.get("alpha_init_std", 1e-3)))


def _build_gumbel(search: type[GumbelSearch]) -> Callable[[nn.Module, int, dict[str, Any]],
                                                          pl.LightningModule]:
    def build(supernet: nn.Module, num_classes: int, cfg: dict[str, Any]) -> pl.LightningModule:
        options = dict(cfg)
        return search(
            supernet, num_classes=num_classes,
            weight_optimizer=WeightOptimizerConfig(**options.pop("weight_optimizer", {})),
            arch_optimizer=ArchOptimizerConfig(**options.pop("arch_optimizer", {})), **options)
    return build


def _build_enas(supernet: nn.Module, num_classes: int, cfg: dict[str, Any]) -> pl.LightningModule:
    options = dict(cfg)
    return EnasSearch(
        supernet, num_classes=num_classes,
        controller=ControllerConfig(**options.pop("controller", {})),
        weight_optimizer=WeightOptimizerConfig(**options.pop("weight_optimizer", {})), **options)


def _build_spos(supernet: nn.Module, num_classes: int, cfg: dict[str, Any]) -> pl.LightningModule:
    options = dict(cfg)
    return SposSearch(
        supernet, num_classes=num_classes, search=SearchConfig(**options.pop("search", {})),
        weight_optimizer=WeightOptimizerConfig(**options.pop("weight_optimizer", {})), **options)


Builder = Callable[[nn.Module, int, dict[str, Any]], pl.LightningModule]


@dataclass(frozen=True)
class AlgorithmSpec:
    """How to build an algorithm, and the shipped search spaces it is documented and tested on."""

    build: Builder
    spaces: tuple[str, ...]


ALGORITHMS: dict[str, AlgorithmSpec] = {
    "darts": AlgorithmSpec(_build_darts, ("darts", "nb201")),
    "enas": AlgorithmSpec(_build_enas, ("darts", "proxyless")),
    "gdas": AlgorithmSpec(_build_gumbel(GdasSearch), ("darts", "nb201")),
    "snas": AlgorithmSpec(_build_gumbel(SnasSearch), ("darts", "nb201")),
    "proxyless": AlgorithmSpec(_build_proxyless, ("proxyless", "darts")),
    "spos": AlgorithmSpec(_build_spos, ("darts", "nb201")),
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


def create_algorithm(name: str, supernet: nn.Module, *, num_classes: int,
                     cfg: dict[str, Any]) -> pl.LightningModule:
    """Build algorithm ``name`` around ``supernet`` from its config node (without ``name``)."""
    _check_known(name)
    try:
        return ALGORITHMS[name].build(supernet, num_classes, cfg)
    except TypeError as err:
        raise ConfigError(f"bad option for algorithm '{name}': {err}") from None


def _check_known(name: str) -> None:
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm '{name}'; choose one of: {', '.join(list_algorithms())}")
