"""NATS-Bench topology results (benchmark.nats): the 200-epoch test accuracies averaged over seeds,
from both official layouts, one-line errors, per-epoch logging and the genotype meta of a search."""

from __future__ import annotations

import bz2
import os
import pickle
import sys
from pathlib import Path

import nats_bench
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_search
from helpers.nats_fake import all_archs, write_nats_dir, write_nats_file
from oneshot.errors import ConfigError
from oneshot.tables.nats import load_nats_table
from oneshot.train import train
from supernets.genotype_file import load_genotype_file

A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
B = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
C = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
     "nor_conv_3x3~2|")
FINALS = {A: {"cifar10_test": [93.0, 94.0], "cifar100_test": [70.0, 72.0],
              "imagenet16_120_test": [40.0, 44.0]},
          B: {"cifar10_test": [10.0, 10.5]},
          C: {"cifar10_test": [91.0, 92.0], "cifar100_test": [66.0, 67.0],
              "imagenet16_120_test": [38.0, 39.0]}}
MEAN_A = {"cifar10_test": 93.5, "cifar100_test": 71.0, "imagenet16_120_test": 42.0}


@pytest.fixture(scope="module")
def nats_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nats_file(tmp_path_factory.mktemp("nats") / "NATS-tss-fake.pickle.pbz2", FINALS)


def test_lookup_is_the_200_epoch_test_accuracy_averaged_over_seeds(nats_file: Path) -> None:
    table = load_nats_table(nats_file)
    assert table.lookup(A) == MEAN_A
    assert table.lookup(f" {C}\n") == {"cifar10_test": 91.5, "cifar100_test": 66.5,
                                       "imagenet16_120_test": 38.5}
    # The package's own loader reads the fake as the real file: same numbers, and its defaults
    # (12 epochs, one random seed) give other ones.
    api = nats_bench.create(str(nats_file), "topology", fast_mode=False, verbose=False)
    index = api.query_index_by_arch(A)
    assert index == all_archs().index(A)
    for column, dataset in (("cifar10_test", "cifar10"), ("cifar100_test", "cifar100"),
                            ("imagenet16_120_test", "ImageNet16-120")):
        info = api.get_more_info(index, dataset, hp="200", is_random=False)
        assert info["test-accuracy"] == MEAN_A[column]
        assert api.get_more_info(index, dataset)["test-accuracy"] != MEAN_A[column]


def test_fast_mode_directory_gives_the_same_results(tmp_path: Path) -> None:
    folder = write_nats_dir(tmp_path / "NATS-tss-fake-simple", FINALS)
    table = load_nats_table(folder)
    assert table.lookup(A) == MEAN_A
    api = nats_bench.create(str(folder), "topology", fast_mode=True, verbose=False)
    assert api.get_more_info(A, "cifar100", hp="200", is_random=False)["test-accuracy"] == 71.0


def _one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_or_unevaluated_architecture_is_a_config_error(nats_file: Path,
                                                              tmp_path: Path) -> None:
    table = load_nats_table(nats_file)
    with pytest.raises(ConfigError, match="'Genotype\\(normal=.*' is not in NATS-Bench file "
                                          ".*15625 architectures.*space=nb201") as info:
        table.lookup("Genotype(normal=[('sep_conv_3x3', 0)])")
    _one_line(info)
    other = all_archs()[7]
    with pytest.raises(ConfigError, match="holds no 200-epoch results for architecture 7"):
        table.lookup(other)
    folder = write_nats_dir(tmp_path / "simple", {A: FINALS[A]})
    with pytest.raises(ConfigError, match="holds no 200-epoch results for architecture 7"):
        load_nats_table(folder).lookup(other)


def test_missing_file_and_missing_package_are_config_errors(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            nats_file: Path) -> None:
    with pytest.raises(ConfigError, match="NATS-Bench file '.*nope.pickle.pbz2' not found; set "
                                          "benchmark.nats") as info:
        load_nats_table(tmp_path / "nope.pickle.pbz2")
    _one_line(info)
    with pytest.raises(ConfigError, match="meta.pickle.pbz2' not found"):
        load_nats_table(tmp_path)  # a directory without the fast-mode meta file
    monkeypatch.setitem(sys.modules, "nats_bench", None)  # import nats_bench -> ImportError
    with pytest.raises(ConfigError, match='needs the nats_bench package; install it with pip '
                                          'install -e ".\\[bench\\]"') as info:
        load_nats_table(nats_file)
    _one_line(info)


class _Shell:
    """Unpickles to a call of os.system: what a hostile pickle does."""

    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize("content, message", [
    (b"not bz2 at all", "cannot read NATS-Bench file"),
    (bz2.compress(pickle.dumps({"meta_archs": [A]})), "has no 'arch2infos' dict"),
    (bz2.compress(pickle.dumps([1, 2])), "has no 'arch2infos' dict"),
    (bz2.compress(pickle.dumps(_Shell())),
     "cannot read .*\\(it asks for posix.system, which a results file does not hold\\)"),
], ids=["not-bz2", "no-results", "not-a-dict", "code"])
def test_other_files_are_refused_in_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.pickle.pbz2"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_nats_table(path)
    assert str(path) in _one_line(info)


SEARCH = ("space=nb201", "space.layers=1", "space.candidates=[nor_conv_3x3]", "algorithm=gdas",
          "trainer.limit_train_batches=2")  # one candidate: the search derives cell C


def test_search_logs_and_records_the_nats_accuracies(tmp_path: Path, nats_file: Path) -> None:
    run = tmp_path / "run"
    train(compose_search(f"run_dir={run}", *SEARCH, f"benchmark.nats={nats_file}"))
    expected = load_nats_table(nats_file).lookup(C)
    assert load_genotype_file(run / "genotype.json").meta["benchmark"] == expected
    assert load_genotype_file(run / "genotypes" / "epoch_000.json").meta["benchmark"] == expected
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    for column, value in expected.items():
        assert [(e.step, e.value) for e in events.Scalars(f"benchmark/{column}")] == \
            [(0, pytest.approx(value)), (1, pytest.approx(value))]


@pytest.mark.parametrize("overrides, message", [
    (("space=darts",), "benchmark.nats holds NATS-Bench cells of space=nb201, not of space=darts"),
    (("space=nb201", "benchmark.table=t.csv"), "benchmark.table and benchmark.nats are both set"),
    (("space=nb201",), "NATS-Bench file '.*absent.pickle.pbz2' not found"),
])
def test_bad_nats_options_stop_the_search_before_training(tmp_path: Path, overrides: tuple,
                                                          message: str, nats_file: Path) -> None:
    target = tmp_path / "absent.pickle.pbz2" if "not found" in message else nats_file
    with pytest.raises(ConfigError, match=message):
        train(compose_search(f"run_dir={tmp_path / 'run'}", *overrides, f"benchmark.nats={target}"))
    assert not (tmp_path / "run").exists()
