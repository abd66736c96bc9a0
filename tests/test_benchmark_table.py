"""Benchmark tables: reading and checking the CSV, lookups, per-epoch logging and genotype meta."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_search
from oneshot.tables.benchmark import load_benchmark_table
from oneshot.errors import ConfigError
from oneshot.train import train
from supernets.genotype_file import load_genotype_file
from supernets.nb201.genotype import Nb201Genotype

A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
B = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_numeric_columns_are_found_and_looked_up(tmp_path) -> None:
    table = load_benchmark_table(_csv(tmp_path / "t.csv", (
        "arch,test_acc,valid_acc,notes\n"
        f"{A},93.5,91.0,best\n"
        f" {B} ,10.0,,worst\n")))
    assert table.columns == ("test_acc", "valid_acc")  # 'notes' is not numeric
    assert table.lookup(A) == {"test_acc": 93.5, "valid_acc": 91.0}
    assert table.lookup(f"{B}\n") == {"test_acc": 10.0, "valid_acc": None}  # empty cell
    assert table.lookup(str(Nb201Genotype.from_text(A))) == table.lookup(A)
    other = "|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"
    assert table.lookup(other) is None
    assert f"architecture '{other}' is not in benchmark table" in table.missing_message(other)
    assert "2 architectures in column 'arch'" in table.missing_message(other)


def test_chosen_columns_and_arch_column(tmp_path) -> None:
    table = load_benchmark_table(_csv(tmp_path / "t.csv", f"cell,acc,loss\n{A},93.5,0.2\n"),
                                 arch_column="cell", columns=["acc"])
    assert table.columns == ("acc",) and table.lookup(A) == {"acc": 93.5}


@pytest.mark.parametrize("text, options, message", [
    (f"architecture,acc\n{A},1\n", {}, "has no column 'arch'; its columns are: architecture, acc; "
                                       "set benchmark.arch_column=NAME"),
    (f"arch,acc\n{A},1\n", {"columns": ["test_acc"]}, "has no result column\\(s\\) test_acc"),
    (f"arch,acc\n{A},1\n{B},n/a\n", {"columns": ["acc"]},
     "line 3: column 'acc' holds 'n/a', not a number"),
    (f"arch,notes\n{A},x\n", {}, "has no numeric column besides 'arch'"),
    (f"arch,acc\n{A},1\n{A},2\n", {}, "line 3 repeats architecture '.*' of line 2"),
    ("arch,acc\n", {}, "has a header but no rows"),
    ("arch,acc\n,1\n", {}, "line 2: column 'arch' is empty"),
])
def test_bad_tables_are_one_line_config_errors(tmp_path, text: str, options: dict,
                                               message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_benchmark_table(_csv(tmp_path / "t.csv", text), **options)
    assert "\n" not in str(info.value) and "t.csv" in str(info.value)


def test_missing_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="benchmark table '.*nope.csv' not found"):
        load_benchmark_table(tmp_path / "nope.csv")


SEARCH = ("space=nb201", "space.layers=1", "algorithm=gdas", "trainer.limit_train_batches=2")


def test_search_logs_and_records_the_benchmark_results(tmp_path) -> None:
    # First run: the table lacks the searched architectures -> one warning each, null meta.
    first = tmp_path / "first"
    other = _csv(tmp_path / "other.csv", f"arch,acc\n{B},1\n")
    with pytest.warns(UserWarning, match="is not in benchmark table"):
        train(compose_search(f"run_dir={first}", *SEARCH, f"benchmark.table={other}"))
    assert load_genotype_file(first / "genotype.json").meta["benchmark"] is None
    # Second run (same seed, same genotypes): a table that has them.
    epochs = [load_genotype_file(first / "genotypes" / f"epoch_{e:03d}.json") for e in (0, 1)]
    archs = [str(Nb201Genotype.from_dict(document.genotype)) for document in epochs]
    rows = {arch: 50.0 + 10 * e for e, arch in enumerate(archs)}  # a repeated arch keeps the last
    table = _csv(tmp_path / "nb201.csv", "arch,test_acc,label\n" + "".join(
        f"{arch},{value},x\n" for arch, value in rows.items()))
    second = tmp_path / "second"
    train(compose_search(f"run_dir={second}", *SEARCH, f"benchmark.table={table}"))
    events = EventAccumulator(str(second / "tensorboard"))
    events.Reload()
    logged = [(event.step, event.value) for event in events.Scalars("benchmark/test_acc")]
    assert logged == [(e, rows[arch]) for e, arch in enumerate(archs)]
    assert "benchmark/label" not in events.Tags()["scalars"]
    final = json.loads((second / "genotype.json").read_text())
    assert final["meta"]["benchmark"] == {"test_acc": rows[archs[1]]}
    epoch_meta = load_genotype_file(second / "genotypes" / "epoch_000.json").meta
    assert epoch_meta["benchmark"] == {"test_acc": rows[archs[0]]}


def test_bad_table_stops_the_search_before_training(tmp_path) -> None:
    table = _csv(tmp_path / "t.csv", f"cell,acc\n{B},1\n")
    with pytest.raises(ConfigError, match="has no column 'arch'"):
        train(compose_search(f"run_dir={tmp_path / 'run'}", *SEARCH, f"benchmark.table={table}"))
    assert not (tmp_path / "run").exists()
