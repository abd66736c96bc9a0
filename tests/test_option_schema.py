"""Every option's type and range, checked before a run (``oneshot.commandline.schema``), and the
one-line errors for bad values, a trainer Lightning refuses, and unwritable outputs."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_module
from lightning_fabric import connector
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.accelerators import AcceleratorRegistry

import oneshot.latency as latency
from conftest import TINY_SEARCH, compose_search
from oneshot.commandline import schema
from oneshot.search.algorithms.base import ArchOptimizerConfig, WeightOptimizerConfig
from oneshot.search.algorithms.enas import ControllerConfig
from oneshot.search.algorithms.gumbel import ESTIMATORS, TAU_SCHEDULES
from oneshot.search.algorithms.proxyless import FORMS, LatencyConfig
from oneshot.search.algorithms.spos import STRATEGIES, SearchConfig
from oneshot.commandline.checks import config_groups, run_cli, validate_overrides
from oneshot.errors import ConfigError
from oneshot.retraining.module import RetrainOptimizerConfig
from oneshot.train import build_trainer, train
from supernets.recompute import RECOMPUTE_MODES
from supernets.spaces import get_space

CONFIGS = {"train": "oneshot.conf.search", "retrain": "oneshot.conf.retrain",
           "latency": "oneshot.conf.latency"}
CONF = Path(schema.__file__).parents[1] / "conf"


def _compose(entry: str, *overrides: str) -> DictConfig:
    with initialize_config_module(CONFIGS[entry], version_base="1.3"):
        return compose(entry, overrides=list(overrides))


def _leaves(node: Any, prefix: str = "") -> set[str]:
    """Dotted keys of every value under ``node`` (lists are values)."""
    if not isinstance(node, dict):
        return {prefix}
    return set().union(*(_leaves(v, f"{prefix}.{k}" if prefix else k) for k, v in node.items()))


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run ``oneshot.train``'s command-line check on ``argv``; the one stderr line it exits 2 with."""
    def hydra_entry() -> None:
        raise AssertionError("Hydra must not start")

    with pytest.raises(SystemExit) as info:
        run_cli(hydra_entry, "oneshot.conf.search", "train", argv)
    assert info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# --- the bad values: one line naming the option, exit 2, nothing written ----------------

@pytest.mark.parametrize("override, message", [
    ("space.channels=-3", "space.channels must be a positive integer, got -3"),
    ("space.channels=abc", "space.channels must be a positive integer, got 'abc'"),
    ("trainer.devices=0", "trainer.devices must be a positive integer, -1 (every device), auto, "
                          "or a list of device indices, got 0"),
    ("algorithm.arch_optimizer.lr=-1", "algorithm.arch_optimizer.lr must be a positive number, "
                                       "got -1"),
    ("space.recompute=weightd", "space.recompute must be one of: none, weighted, edge, cell, "
                                "got 'weightd'"),
])
def test_bad_values_exit_2_before_hydra(override: str, message: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    line = _run_cli([*TINY_SEARCH, override, f"hydra.run.dir={run_dir}"], capsys)
    assert line == f"error: {message}"
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train(compose_search(f"run_dir={run_dir}", override))  # a resumed config is checked too
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["a file", "/proc"])
def test_unwritable_hydra_run_dir(where: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture) -> None:
    if where == "/proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    run_dir = blocker / "run" if where == "a file" else Path("/proc/x")
    line = _run_cli([*TINY_SEARCH, f"hydra.run.dir={run_dir}"], capsys)
    assert line.startswith(f"error: cannot write the run dir hydra.run.dir={run_dir}: ")
    assert line.endswith("choose another with hydra.run.dir=DIR")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_unwritable_sweep_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = _run_cli(["-m", "seed=0,1", f"hydra.sweep.dir={blocker / 'sweep'}"], capsys)
    assert line.startswith("error: cannot write the run dir hydra.sweep.dir=")


@pytest.mark.parametrize("out", ["/proc/lat.json", "{blocker}/lat.json", "{tmp}"])
def test_latency_refuses_an_unwritable_out_before_timing(out: str, tmp_path: Path, capsys,
                                                         monkeypatch) -> None:
    if out.startswith("/proc") and not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = out.format(blocker=blocker, tmp=tmp_path)
    monkeypatch.setattr(latency, "measure_table", lambda cfg: pytest.fail("measured"))
    assert latency.main(["space=proxyless", f"out={out}"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot write out={out}: ")
    assert lines[0].endswith("choose another path with out=PATH")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_lightning_refusing_the_trainer_is_one_line(tmp_path: Path) -> None:
    cfg = compose_search("trainer.accelerator=gpu")
    with pytest.raises(ConfigError) as info:
        build_trainer(cfg, tmp_path, [])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("cannot start the trainer with trainer.accelerator=gpu "
                              "trainer.devices=1 ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_on_a_machine_without_one_exits_2(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "oneshot.train", *TINY_SEARCH, "trainer.accelerator=gpu",
         f"hydra.run.dir={run_dir}"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot start the trainer with trainer.accelerator=gpu")
    assert list(tmp_path.iterdir()) == []


# --- "unknown config key" lists the keys of the config the user composed ------------------------

@pytest.mark.parametrize("overrides, where, present", [
    (["algorithm=gdas", "algorithm.unrolled=true"], "algorithm", "tau_max"),
    (["space=nb201", "space.max_skip_connect=1"], "space", "channels"),
    (["experiment=quick", "space=nb201", "algorithm=spos", "space.max_skip_connect=1"], "space",
     "candidates"),
])
def test_unknown_key_lists_the_composed_configs_keys(overrides: list[str], where: str,
                                                     present: str) -> None:
    bad = overrides[-1].split("=")[0]
    with pytest.raises(ConfigError) as info:
        validate_overrides("oneshot.conf.search", "train", overrides)
    message = str(info.value)
    prefix = f"unknown config key '{bad}'; keys under {where}: "
    assert message.startswith(prefix)
    listed = message[len(prefix):].split(" (use ")[0].split(", ")
    assert present in listed and bad.split(".")[-1] not in listed


# --- the schema covers every option, agrees with the code, and accepts the defaults --------------

@pytest.mark.parametrize("group", ["task", "space", "algorithm"])
def test_every_group_option_has_a_schema(group: str) -> None:
    folder = "task" if group == "task" else f"search/{group}"
    names = sorted(p.stem for p in (CONF / folder).glob("*.yaml"))
    assert sorted(schema.GROUPS[group]) == names
    for name in names:
        declared = _leaves(OmegaConf.to_container(OmegaConf.load(CONF / folder / f"{name}.yaml")))
        assert set(schema.GROUPS[group][name]) == declared - {"name"}, name


@pytest.mark.parametrize("entry", list(CONFIGS))
def test_every_option_of_each_entry_point_has_a_schema(entry: str) -> None:
    groups = {**config_groups("oneshot.conf.search", stored=False),  # the shipped YAML files
              **config_groups(CONFIGS[entry], stored=False)}
    choices = [f"{group}={name}" for group in schema.ENTRY_POINTS[entry].groups
               for name in groups[group]]
    for choice in choices:  # every choice of every group, the others at their defaults
        cfg = _compose(entry, choice)
        options = schema.options_of(cfg, entry)
        leaves = _leaves(OmegaConf.to_container(cfg))
        if entry == "latency":  # a search preset's algorithm node there is not used
            leaves = {key for key in leaves if not key.startswith("algorithm.")}
        assert leaves - {"genotype"} <= set(options) | {f"{g}.name" for g in groups}
        schema.check_options(cfg, entry)  # the defaults are valid


@pytest.mark.parametrize("experiment", config_groups("oneshot.conf.search")["experiment"])
@pytest.mark.parametrize("algorithm", config_groups("oneshot.conf.search")["algorithm"])
def test_every_preset_passes_the_schema(experiment: str, algorithm: str) -> None:
    validate_overrides("oneshot.conf.search", "train", [f"algorithm={algorithm}",
                                                        f"experiment={experiment}"])


def _fields(config: type) -> set[str]:
    return {field.name for field in dataclasses.fields(config)}


def _under(table: schema.Table, prefix: str) -> set[str]:
    return {key[len(prefix) + 1:] for key in table if key.startswith(prefix + ".")}


def test_schema_agrees_with_the_classes_the_options_build() -> None:
    for name, table in schema.SPACES.items():
        assert set(table) <= set(inspect.signature(get_space(name).supernet).parameters), name
    assert set(schema.WEIGHT_OPTIMIZER) == _fields(WeightOptimizerConfig)
    assert set(schema.ARCH_OPTIMIZER) == _fields(ArchOptimizerConfig)
    assert _under(schema.ALGORITHMS["enas"], "controller") == _fields(ControllerConfig)
    assert _under(schema.ALGORITHMS["spos"], "search") == _fields(SearchConfig)
    assert _under(schema.ALGORITHMS["proxyless"], "latency") == _fields(LatencyConfig)
    assert _under(schema.RETRAIN.options, "optimizer") == _fields(RetrainOptimizerConfig)
    assert schema.GUMBEL["tau_schedule"].choices == tuple(TAU_SCHEDULES)
    assert schema.ALGORITHMS["gdas"]["estimator"].choices == tuple(ESTIMATORS)
    assert schema.ALGORITHMS["proxyless"]["latency.form"].choices == tuple(FORMS)
    assert schema.ALGORITHMS["spos"]["search.strategy"].choices == tuple(STRATEGIES)
    assert schema.RECOMPUTE.choices == RECOMPUTE_MODES
    assert set(schema.ACCELERATORS) == {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
    lightning = (connector._PRECISION_INPUT_INT, connector._PRECISION_INPUT_STR,
                 connector._PRECISION_INPUT_STR_ALIAS)
    assert set(schema.PRECISIONS) == {p for values in lightning for p in typing.get_args(values)}


def test_the_schema_runs_before_torch_is_imported() -> None:
    code = "import sys, oneshot.commandline.schema; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("option, good, bad", [
    (schema.integer(1), [1, 7], [0, -3, 1.0, True, "abc", None]),
    (schema.number(above=0, null=True), [1e-3, 2, None], [0, -1, float("inf"), float("nan"), False]),
    (schema.PROBABILITY, [0, 0.99], [1, 1.0, -0.1]),
    (schema.TRAINER["devices"], [1, -1, "auto", [0, 1]], [0, -2, [], "gpu"]),
    (schema.BETAS, [[0.5, 0.999], (0, 0)], [[0.5], [0.5, 1.0], "0.5,0.9"]),
    (schema.text("linear", "exponential"), ["linear"], ["cosine", 1]),
])
def test_options_accept_and_refuse(option: schema.Option, good: list, bad: list) -> None:
    assert all(option.accepts(value) for value in good)
    assert not any(option.accepts(value) for value in bad)
