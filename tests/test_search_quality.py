"""benchmarks/search_quality.py (each search in its own process, cells, costs and NATS-Bench
accuracies in markdown and JSON) and the experiment=nb201_paper preset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import compose_search
from helpers.nats_fake import write_nats_file
from test_nats import C, FINALS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import search_quality  # noqa: E402

TINY = ("space=nb201", "space.channels=4", "space.layers=1", "space.candidates=[nor_conv_3x3]",
        "task.num_train=32", "task.num_test=16", "task.image_size=8", "data.batch_size=8",
        "data.eval_batch_size=16", "trainer.max_epochs=1", "trainer.accelerator=cpu")
"""One candidate per edge: every search finds cell C, which the fake NATS file holds."""


@pytest.mark.slow
def test_two_seeds_in_their_own_processes_give_the_table_and_json(tmp_path: Path, capsys) -> None:
    nats = write_nats_file(tmp_path / "nats.pickle.pbz2", FINALS)
    out = tmp_path / "quality.json"
    code = search_quality.main([
        "--task", "synthetic", "--experiment", "quick", "--algorithms", "gdas", "--seeds", "0",
        "1", "--root", str(tmp_path / "runs"), "--jobs", "2", "--nats", str(nats), "--table",
        "--out", str(out), "--", *TINY])
    captured = capsys.readouterr()
    assert code == 0, captured.err  # each search's outcome line
    document = json.loads(out.read_text())
    searches = document["searches"]
    assert [(s["algorithm"], s["seed"], s["exit_code"]) for s in searches] == [("gdas", 0, 0),
                                                                               ("gdas", 1, 0)]
    for search in searches:
        run_dir = Path(search["run_dir"])
        assert run_dir == tmp_path / "runs" / "gdas" / f"seed_{search['seed']}"
        meta = json.loads((run_dir / "genotype.json").read_text())["meta"]
        assert meta["seed"] == search["seed"] and meta["val_acc"] == search["val_acc"]
        assert search["genotype"] == C
        assert search["benchmark"] == {"cifar10_test": 91.5, "cifar100_test": 66.5,
                                       "imagenet16_120_test": 38.5}
        assert search["wall_s"] > 0 and 50 < search["peak_rss_mib"] < 8192  # a torch process
    table = captured.out
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    headers = readme.split("## Search quality", 1)[1].split("```text\n", 1)[1].split("```")[0]
    assert headers.startswith("| algorithm | searches | supernet val acc (%) | cifar10_test (%)")
    assert all(line in table.splitlines() for line in headers.splitlines())  # as the README shows
    assert "| gdas | 2/2 | " in table
    assert "| 91.50 ± 0.00 | 66.50 ± 0.00 | 38.50 ± 0.00 |" in table
    escaped = C.replace("|", "\\|")
    assert f"| gdas | 0 | `{escaped}` |" in table and f"| gdas | 1 | `{escaped}` |" in table


def test_failed_searches_are_counted_and_reported(tmp_path: Path, capsys) -> None:
    code = search_quality.main(["--task", "synthetic", "--experiment", "quick", "--algorithms",
                                "gdas", "--seeds", "3", "--root", str(tmp_path), "--table", "--",
                                *TINY, "data.batch_size=0"])
    assert code == 1
    captured = capsys.readouterr()
    assert "| gdas | 0/1 | n/a | n/a | n/a |" in captured.out
    assert "| gdas | 3 | failed: error: data.batch_size" in captured.out
    assert "gdas seed 3:" in captured.err and "FAILED (error: data.batch_size" in captured.err


def test_a_missing_benchmark_file_stops_before_any_search(tmp_path: Path, capsys) -> None:
    code = search_quality.main(["--root", str(tmp_path / "runs"), "--nats",
                                str(tmp_path / "absent")])
    assert code == 2
    assert "error: NATS-Bench file" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_markdown_summary_is_mean_and_sample_std_over_the_seeds() -> None:
    runs = [search_quality.SearchResult("darts", s, f"r{s}", 0, wall, rss, genotype=C,
                                        val_acc=acc, benchmark={"acc": bench})
            for s, wall, rss, acc, bench in ((0, 60.0, 1000.0, 0.5, 93.0),
                                             (1, 180.0, 1200.0, 0.7, 94.0))]
    runs.append(search_quality.SearchResult("darts", 2, "r2", 2, 1.0, 90.0, error="error: bad"))
    table = search_quality.markdown_tables(runs, ["acc"])
    assert "| darts | 2/3 | 60.00 ± 14.14 | 93.50 ± 0.71 | 2.00 ± 1.41 | 1100 ± 141 |" in table
    assert "| darts | 2 | failed: error: bad | n/a | n/a | 0.02 | 90 |" in table


@pytest.mark.parametrize("algorithm, epochs", [("darts", 50), ("gdas", 240), ("snas", 50),
                                               ("spos", 250)])
def test_nb201_paper_preset(algorithm: str, epochs: int) -> None:
    cfg = compose_search("experiment=nb201_paper", f"algorithm={algorithm}", base=())
    assert (cfg.space.name, cfg.space.channels, cfg.space.layers) == ("nb201", 16, 5)
    assert cfg.task.name == "cifar10" and cfg.task.subset is None and cfg.data.batch_size == 64
    assert cfg.trainer.max_epochs == epochs
    weights = cfg.algorithm.weight_optimizer
    assert (weights.lr, weights.lr_min, weights.momentum, weights.weight_decay,
            weights.grad_clip) == (0.025, 0.001, 0.9, 0.0005, 5.0)
    if algorithm != "spos":
        arch = cfg.algorithm.arch_optimizer
        assert (arch.lr, list(arch.betas), arch.weight_decay) == (0.0003, [0.5, 0.999], 0.001)


@pytest.mark.parametrize("algorithm", ["gdas", "darts", "snas"])
def test_nb201_cpu_preset_gives_gdas_the_dense_estimator_with_the_auxiliary_skip(algorithm: str) -> None:
    cfg = compose_search("experiment=nb201_cpu", f"algorithm={algorithm}", base=())
    assert (cfg.space.name, cfg.space.channels, cfg.space.layers) == ("nb201", 8, 2)
    if algorithm == "gdas":
        assert (cfg.algorithm.estimator, cfg.algorithm.auxiliary_skip) == ("dense", True)
        assert cfg.trainer.max_epochs == 30
    else:  # the other algorithms keep their own defaults and the preset's 10 epochs
        assert cfg.trainer.max_epochs == 10 and "estimator" not in cfg.algorithm
        assert cfg.algorithm.get("auxiliary_skip", False) is False
    overridden = compose_search("experiment=nb201_cpu", "algorithm=gdas", "trainer.max_epochs=5",
                                "algorithm.estimator=reference", base=())
    assert (overridden.trainer.max_epochs, overridden.algorithm.estimator) == (5, "reference")
