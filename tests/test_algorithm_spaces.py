"""Contract tests from the registries: which algorithm searches which space (one declaration, the
algorithm registry; the README's table; the CLI's refusal of other pairs), every registered space
through ``check_space``, and every declared pair searched, derived and retrained one step."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_SEARCH, compose_search
from oneshot.search.algorithms import list_algorithms, shipped_spaces, supported_spaces
from oneshot.errors import ConfigError
from oneshot.retrain import retrain
from oneshot.train import train
from supernets import check_space
from supernets.genotype_file import load_genotype_file
from supernets.spaces import get_space, list_spaces

README = Path(__file__).resolve().parents[1] / "README.md"
DECLARED = [(a, s) for a in list_algorithms() for s in supported_spaces(a)]
REFUSED = [(a, s) for a in list_algorithms() for s in shipped_spaces() if (a, s) not in DECLARED]

NO_SPACE = tuple(o for o in TINY_SEARCH if not o.startswith("space."))
SPACE_TINY = {
    "darts": ("space=darts", "space.channels=4", "space.layers=3"),
    "nb201": ("space=nb201", "space.channels=4", "space.layers=1"),
    "proxyless": ("space=proxyless", "space.stem_channels=4", "space.first_channels=4",
                  "space.widths=[4,8]", "space.depths=[2,2]", "space.strides=[1,2]",
                  "space.head_channels=8"),
}
NETWORK_TINY = {"darts": {"channels": 4, "layers": 3, "auxiliary": False},
                "nb201": {"channels": 4, "layers": 1}}
ALGORITHM_TINY = {
    "enas": ("algorithm.controller_steps=2", "algorithm.derive_samples=2",
             "algorithm.controller.hidden_size=8"),
    "spos": ("algorithm.search.population=2", "algorithm.search.sample_size=1",
             "algorithm.search.cycles=3", "algorithm.search.calib_batches=1",
             "algorithm.search.eval_batches=1"),
    "pcdarts": ("algorithm.warmup_epochs=0",),           # its architecture steps in the one epoch
}


def readme_algorithm_spaces() -> dict[str, set[str]]:
    """``algorithm -> spaces`` as the README's algorithm table lists them."""
    table = README.read_text(encoding="utf-8").split("| `algorithm=` |", 1)[1].split("\n\n", 1)[0]
    rows = [line.split("|") for line in table.splitlines()[2:]]
    return {re.fullmatch(r"\s*`(\w+)`\s*", row[1]).group(1): {s.strip() for s in row[3].split(",")}
            for row in rows}


def test_readme_table_is_the_declaration() -> None:
    assert readme_algorithm_spaces() == {a: set(supported_spaces(a)) for a in list_algorithms()}


def test_every_shipped_space_is_declared_by_some_algorithm() -> None:
    assert shipped_spaces() == list_spaces()


@pytest.mark.parametrize("algorithm, space", REFUSED)
def test_undeclared_pair_is_refused_before_any_data(tmp_path, algorithm: str, space: str) -> None:
    # task.root does not exist: the refusal must come before the data is looked for
    cfg = compose_search(f"run_dir={tmp_path / 'run'}", f"algorithm={algorithm}", *SPACE_TINY[space],
                         "task=cifar10", f"task.root={tmp_path / 'no-data'}", "task.download=false",
                         base=[o for o in NO_SPACE if not o.startswith("task")])
    with pytest.raises(ConfigError) as info:
        train(cfg)
    others = ", ".join(a for a in list_algorithms() if space in supported_spaces(a))
    assert str(info.value) == (
        f"algorithm '{algorithm}' does not support space '{space}'; supported spaces: "
        f"{', '.join(supported_spaces(algorithm))} (for space={space} choose algorithm= one of: "
        f"{others})")
    assert not (tmp_path / "run").exists() and not (tmp_path / "no-data").exists()


def test_cli_refuses_enas_on_nb201_in_one_line(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "oneshot.train", "algorithm=enas", "space=nb201",
                             "task=synthetic", f"hydra.run.dir={tmp_path / 'run'}"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: algorithm 'enas' does not support space 'nb201'; "
                                    "supported spaces: darts, proxyless")
    assert not (tmp_path / "run").exists()


def _space_options(space: str) -> dict[str, object]:
    """The tiny options of a shipped space, else the registered space's quick sizes."""
    if space not in SPACE_TINY:
        return dict(get_space(space).supernet.quick_options)
    options = {}
    for override in SPACE_TINY[space][1:]:
        key, value = override.split("=")
        options[key.split(".")[1]] = [int(v) for v in value.strip("[]").split(",")] \
            if value.startswith("[") else int(value)
    return options


@pytest.mark.parametrize("space", list_spaces())
def test_every_registered_space_passes_check_space(space: str) -> None:
    genotype = check_space(space, options=_space_options(space),
                           network_options=NETWORK_TINY.get(space), input_size=(2, 3, 8, 8))
    assert get_space(space).genotype_from_dict(genotype.to_dict()) == genotype


@pytest.mark.parametrize("algorithm, space", DECLARED)
def test_every_declared_pair_searches_and_retrains(tmp_path, algorithm: str, space: str) -> None:
    result = train(compose_search(f"run_dir={tmp_path}", f"algorithm={algorithm}", *SPACE_TINY[space],
                                  *ALGORITHM_TINY.get(algorithm, ()), "trainer.max_epochs=1",
                                  "trainer.limit_train_batches=1", base=NO_SPACE))
    document = load_genotype_file(tmp_path / "genotype.json")
    assert document.space == space and document.meta["algorithm"] == algorithm
    assert get_space(space).genotype_from_dict(document.genotype) == result["genotype"]
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    metrics = retrain(_compose_retrain(
        f"genotype={tmp_path}", f"run_dir={tmp_path / 'retrain'}",
        *(f"network.{k}={str(v).lower()}" for k, v in NETWORK_TINY.get(space, {}).items())))
    assert metrics["space"] == space and metrics["genotype"] == str(result["genotype"])
    assert 0.0 <= metrics["test_acc"] <= 1.0 and metrics["params"] > 0


def _compose_retrain(*overrides: str):
    from hydra import compose, initialize_config_module

    tiny = ["task=synthetic", "task.num_train=32", "task.num_test=16", "task.image_size=8",
            "data.batch_size=8", "data.eval_batch_size=16", "trainer.accelerator=cpu",
            "trainer.max_epochs=1", "trainer.limit_train_batches=1",
            "trainer.enable_progress_bar=false"]
    with initialize_config_module(config_module="oneshot.conf.retrain", version_base="1.3"):
        return compose("retrain", overrides=[*tiny, *overrides])


@pytest.mark.parametrize("space", shipped_spaces())
def test_quick_preset_sizes_every_space(space: str) -> None:
    algorithm = next(a for a in list_algorithms() if space in supported_spaces(a))
    cfg = compose_search(f"space={space}", f"algorithm={algorithm}", "experiment=quick", base=())
    options = {k: v for k, v in cfg.space.items() if k != "name"}
    supernet = get_space(space).supernet(num_classes=10, **options)  # no option of another space
    full = get_space(space).supernet(num_classes=10)
    assert sum(p.numel() for p in supernet.parameters()) < sum(p.numel() for p in full.parameters())
