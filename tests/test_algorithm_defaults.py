"""Algorithm defaults live in one place: the YAML files the command line reads.

``create_algorithm`` fills every option it is not given from them, the Python classes declare
none of their own, and the experiment presets only change what they mean to change.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from importlib import resources
from typing import Any

import pytest
from omegaconf import OmegaConf

import oneshot.train as train_module
from conftest import compose_search
from oneshot.search.algorithms import (algorithm_defaults, algorithm_space_options,
                                       create_algorithm, list_algorithms, supported_spaces)
from oneshot.search.algorithms.base import ArchOptimizerConfig, WeightOptimizerConfig
from oneshot.search.algorithms.controller import Controller
from oneshot.search.algorithms.darts import DartsSearch
from oneshot.search.algorithms.enas import ControllerConfig, EnasSearch
from oneshot.search.algorithms.gumbel import GdasSearch, SnasSearch
from oneshot.search.algorithms.pcdarts import PcDartsSearch
from oneshot.search.algorithms.proxyless import LatencyConfig, ProxylessSearch
from oneshot.search.algorithms.spos import SearchConfig, SposSearch
from oneshot.commandline.checks import config_groups
from supernets.darts.search import DartsSupernet
from supernets.spaces import create_supernet, get_space

SEARCHES = (DartsSearch, EnasSearch, GdasSearch, SnasSearch, ProxylessSearch, SposSearch,
            PcDartsSearch)
CONFIGS = (WeightOptimizerConfig, ArchOptimizerConfig, ControllerConfig, LatencyConfig,
           SearchConfig)
NOT_OPTIONS = {"hparams", "options", "init_range"}  # plumbing, not algorithm options


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists, as the YAML has them."""
    return json.loads(json.dumps(value))


def _cli_space(name: str) -> str:
    """A space ``name`` supports that the tiny search settings (channels, layers) fit."""
    return next(space for space in supported_spaces(name) if space in ("darts", "nb201"))


@pytest.mark.parametrize("name", list_algorithms())
def test_python_api_defaults_equal_the_command_line_defaults(name: str) -> None:
    cfg = compose_search(f"algorithm={name}", f"space={_cli_space(name)}")
    supernet = create_supernet(cfg.space.name, num_classes=10, **train_module._options(cfg.space),
                               **algorithm_space_options(name, get_space(cfg.space.name).supernet, {}))
    module = create_algorithm(name, supernet, num_classes=10, cfg={})
    expected = {"algorithm": name, "num_classes": 10, **train_module._options(cfg.algorithm)}
    assert _plain(dict(module.hparams)) == expected


def test_enas_python_api_trains_with_the_yaml_weight_optimizer() -> None:
    module = create_algorithm("enas", DartsSupernet(channels=2, layers=3), num_classes=10, cfg={})
    assert module.weight_optimizer_config.lr == 0.05
    assert module.weight_optimizer_config.weight_decay == 1e-4


def test_a_partial_node_keeps_the_other_defaults() -> None:
    module = create_algorithm("enas", DartsSupernet(channels=2, layers=3), num_classes=10,
                              cfg={"weight_optimizer": {"lr": 0.1}, "controller": {"lr": 0.01}})
    assert module.weight_optimizer_config == WeightOptimizerConfig(
        **{**algorithm_defaults("enas")["weight_optimizer"], "lr": 0.1})
    defaults = algorithm_defaults("enas")["controller"]
    assert module.controller_config == ControllerConfig(**{**defaults, "lr": 0.01})


def test_every_algorithm_has_its_yaml_file() -> None:
    assert list_algorithms() == sorted(config_groups("oneshot.conf.search")["algorithm"])
    assert algorithm_defaults("proxyless")["arch_optimizer"] == {
        "lr": 0.001, "betas": [0.0, 0.999], "weight_decay": 0.0}


@pytest.mark.parametrize("cls", SEARCHES + CONFIGS + (Controller,), ids=lambda c: c.__name__)
def test_the_python_classes_declare_no_defaults_of_their_own(cls: type) -> None:
    with_defaults = [p.name for p in inspect.signature(cls.__init__).parameters.values()
                     if p.default is not inspect.Parameter.empty and p.name not in NOT_OPTIONS]
    assert with_defaults == []
    if dataclasses.is_dataclass(cls):
        assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(cls))


def _presets() -> list[tuple[str, str, dict]]:
    """(file, algorithm, algorithm node) of every experiment preset that sets algorithm options."""
    found = []
    for group in ("experiment", "experiment_algorithm"):
        for path in sorted((resources.files("oneshot.conf.search") / group).iterdir()):
            node = OmegaConf.to_container(OmegaConf.create(path.read_text(encoding="utf-8")))
            if "algorithm" not in node:
                continue
            overrides = [d for d in node.get("defaults", []) if isinstance(d, dict)]
            chosen = [v for d in overrides for k, v in d.items() if k == "override /algorithm"]
            if chosen:
                name = chosen[0]
            elif group == "experiment":  # options for whichever algorithm runs
                name = "*"
            else:  # experiment_algorithm/<experiment>_<algorithm>.yaml
                name = path.name.removesuffix(".yaml").rsplit("_", 1)[1]
            found.append((f"{group}/{path.name}", name, node["algorithm"]))
    return found


def _leaves(node: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_experiment_presets_do_not_repeat_algorithm_defaults() -> None:
    presets = _presets()
    assert {name for _, name, _ in presets} >= {"enas", "spos"}
    for file, name, node in presets:
        names = list_algorithms() if name == "*" else [name]
        every = [_leaves(algorithm_defaults(n)) for n in names]
        repeated = set()
        for key, value in _leaves(node).items():
            known = [defaults[key] for defaults in every if key in defaults]
            if known and all(default == value for default in known):
                repeated.add(key)
        assert not repeated, f"{file} repeats the defaults of {name}: {sorted(repeated)}"
