"""A user's own space from an installed package: examples/custom_space (space=tricell).

The package is installed with pip into a folder of its own (so the test environment is left as
it was); the entry point it declares is then found by every oneshot command run with that folder
on PYTHONPATH, and by the searches of this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import compose_search
from oneshot.commandline.spaces import register_space_configs
from oneshot.search.algorithms import list_algorithms
from supernets import check_space, spaces
from supernets.genotype_file import load_genotype_file

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "custom_space"
TINY = ["task=synthetic", "task.num_train=32", "task.num_test=16", "task.image_size=8",
        "space.channels=4", "space.cells=1", "data.batch_size=8", "data.eval_batch_size=16",
        "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/custom_space installed with pip into a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--target", str(target), str(EXAMPLE)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return target


@pytest.fixture()
def installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process sees the installed package's entry point (its spaces load again)."""
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(spaces, "SPACES", dict(spaces.SPACES))
    monkeypatch.setattr(spaces, "_ENTRY_POINTS_LOADED", [])
    return site


def _run(site: Path, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), str(ROOT)]))}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_example_source_is_short() -> None:
    lines = [line for path in EXAMPLE.rglob("*.py") for line in path.read_text().splitlines()
             if line.strip()]
    assert 0 < len(lines) <= 80


def test_installed_space_searches_draws_and_retrains_from_the_command_line(site, tmp_path) -> None:
    run_dir = tmp_path / "search"
    done = _run(site, "oneshot.train", "space=tricell", "algorithm=darts", *TINY,
                f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr
    document = load_genotype_file(run_dir / "genotype.json")
    assert document.space == "tricell"
    assert sorted(document.genotype["choices"]) == [
        "cell/input_2", "cell/input_3", "cell/op_1", "cell/op_2", "cell/op_3"]
    assert document.meta["space_options"] == {"channels": 4, "cells": 1}

    drawn = _run(site, "oneshot.export", str(run_dir), "--format", "svg", "--out",
                 str(tmp_path / "drawn"))
    assert drawn.returncode in (0, 1), drawn.stderr  # 1: Graphviz's dot is missing, .dot written
    written = sorted(p.name for p in (tmp_path / "drawn").iterdir())
    assert written in (["choices.svg"], ["choices.dot"])

    retrain_dir = tmp_path / "retrain"
    done = _run(site, "oneshot.retrain", f"genotype={run_dir}", "task=synthetic",
                "task.num_train=32", "task.num_test=16", "task.image_size=8",
                "data.batch_size=8", "data.eval_batch_size=16", "trainer.max_epochs=1",
                "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
                f"hydra.run.dir={retrain_dir}")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((retrain_dir / "metrics.json").read_text())
    assert metrics["space"] == "tricell" and metrics["params"] > 0


def test_a_misspelt_installed_space_lists_it(site) -> None:
    done = _run(site, "oneshot.train", "space=tricel")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: unknown space 'tricel'; choose one of: darts, nb201, proxyless, tricell"]


@pytest.mark.parametrize("algorithm", [a for a in list_algorithms() if a != "darts"])
def test_installed_space_searches_with_every_other_algorithm(installed, tmp_path, algorithm) -> None:
    # darts runs from the command line above; a space the user adds pairs with any algorithm
    from oneshot.train import train

    register_space_configs()
    budget = {"enas": ["algorithm.controller_steps=2", "algorithm.derive_samples=2"],
              "spos": ["algorithm.search.population=2", "algorithm.search.sample_size=2",
                       "algorithm.search.cycles=2", "algorithm.search.eval_batches=1"],
              # tricell declares no node_edges() and takes no partial_channels option
              "pcdarts": ["algorithm.partial_channels=1", "algorithm.edge_normalization=false"],
              }.get(algorithm, [])
    result = train(compose_search(f"run_dir={tmp_path}", "space=tricell", f"algorithm={algorithm}",
                                  *budget, base=TINY))
    assert set(result["genotype"].as_dict()) == {
        "cell/op_1", "cell/op_2", "cell/op_3", "cell/input_2", "cell/input_3"}
    assert load_genotype_file(tmp_path / "genotype.json").space == "tricell"


def test_installed_space_passes_the_contract(installed) -> None:
    genotype = check_space("tricell", options={"channels": 4, "cells": 1}, input_size=(2, 3, 8, 8))
    assert genotype.as_dict()["cell/op_1"] in ("skip_connect", "max_pool_3x3", "sep_conv_3x3",
                                               "tri_conv")


def test_unregistered_space_by_class_path_hydra_target(tmp_path) -> None:
    run_dir = tmp_path / "search"
    done = _run(EXAMPLE, "oneshot.train", "space._target_=tricell.TriNet", "algorithm=gdas",
                *TINY, f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr
    assert load_genotype_file(run_dir / "genotype.json").space == "tricell.TriNet"
    exported = _run(EXAMPLE, "oneshot.export", str(run_dir), "--format", "text")
    assert exported.returncode == 0 and exported.stdout.startswith("cell/op_1=")
    missing = _run(EXAMPLE, "oneshot.train", "space=tricell.NoSuchNet")
    assert missing.returncode == 2 and missing.stderr.startswith(
        "error: cannot import space class 'tricell.NoSuchNet'")


def test_the_readme_space_needs_no_registration(tmp_path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Your own search space", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "readme_space.py").write_text(code)
    run_dir = tmp_path / "search"
    done = _run(tmp_path, "oneshot.train", "space._target_=readme_space.MyNet", "algorithm=darts",
                *TINY, f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr
    document = load_genotype_file(run_dir / "genotype.json")
    assert document.space == "readme_space.MyNet"
    assert set(document.genotype["choices"]) == {"cell/op", "cell/input"}
    retrained = _run(tmp_path, "oneshot.retrain", f"genotype={run_dir}", *TINY[:4],
                     "data.batch_size=8", "data.eval_batch_size=16", "trainer.max_epochs=1",
                     "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
                     f"hydra.run.dir={tmp_path / 'retrain'}")
    assert retrained.returncode == 0, retrained.stderr
