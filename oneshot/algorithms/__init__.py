"""The search algorithms, each a LightningModule built from its config node by name."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

import pytorch_lightning as pl
from torch import nn

from oneshot.algorithms.base import ArchOptimizerConfig, WeightOptimizerConfig
from oneshot.algorithms.darts import DartsSearch
from oneshot.algorithms.enas import ControllerConfig, EnasSearch
from oneshot.algorithms.gumbel import GdasSearch, GumbelSearch, SnasSearch
from oneshot.algorithms.proxyless import PROXYLESS_ARCH_OPTIMIZER, LatencyConfig, ProxylessSearch
from oneshot.algorithms.spos import SearchConfig, SposSearch
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


ALGORITHMS: dict[str, Callable[[nn.Module, int, dict[str, Any]], pl.LightningModule]] = {
    "darts": _build_darts,
    "enas": _build_enas,
    "gdas": _build_gumbel(GdasSearch),
    "snas": _build_gumbel(SnasSearch),
    "proxyless": _build_proxyless,
    "spos": _build_spos,
}


def list_algorithms() -> list[str]:
    """Names of the registered search algorithms."""
    return sorted(ALGORITHMS)


def create_algorithm(name: str, supernet: nn.Module, *, num_classes: int,
                     cfg: dict[str, Any]) -> pl.LightningModule:
    """Build algorithm ``name`` around ``supernet`` from its config node (without ``name``)."""
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm '{name}'; choose one of: {', '.join(list_algorithms())}")
    try:
        return ALGORITHMS[name](supernet, num_classes, cfg)
    except TypeError as err:
        raise ConfigError(f"bad option for algorithm '{name}': {err}") from None
