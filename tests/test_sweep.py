"""Hydra multirun: one run dir per job and a summary of the genotypes across seeds; jobs run in
parallel by the joblib launcher share the cores; DDP jobs keep their rank processes inside."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.types import RunMode
from omegaconf import OmegaConf

from conftest import TINY_SEARCH
from oneshot.search import distributed
from oneshot.search.distributed import available_cores, cpu_processes, share_threads, thread_share
from oneshot.storage.sweep import parallel_jobs, summarize_sweep

TESTS = Path(__file__).resolve().parent
ONE_EPOCH = [*(o for o in TINY_SEARCH if not o.startswith("trainer.max_epochs")),
             "trainer.max_epochs=1", "trainer.limit_val_batches=1"]
SUMMARY_FILES = {"multirun.yaml", "summary.csv", "summary.json"}


def run_sweep(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m oneshot.train -m`` with ``args`` in ``cwd``, one thread per process unless the
    run sets its own; the tests' helpers importable (for the thread probe callback)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "oneshot.train", "-m", *args],
                          capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def test_multirun_over_seeds_writes_a_summary(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    overrides = [o for o in TINY_SEARCH if not o.startswith("trainer.max_epochs")]
    proc = subprocess.run(
        [sys.executable, "-m", "oneshot.train", "-m", "seed=0,1", *overrides, "trainer.max_epochs=1",
         f"hydra.sweep.dir={sweep_dir}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (sweep_dir / "0" / "genotype.json").is_file() and (sweep_dir / "1" / "genotype.json").is_file()
    with open(sweep_dir / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["seed"] for row in rows] == ["0", "1"]
    assert [row["job"] for row in rows] == ["0", "1"]
    assert all(row["genotype"].startswith("Genotype(normal=[") for row in rows)
    assert "seed=1" in rows[1]["overrides"]
    assert json.loads((sweep_dir / "summary.json").read_text())[1]["seed"] == 1


def test_summary_skips_jobs_without_a_genotype(search_run: dict, tmp_path: Path) -> None:
    (tmp_path / "0").symlink_to(search_run["run_dir"], target_is_directory=True)
    (tmp_path / "1").mkdir()
    rows = summarize_sweep(tmp_path)
    assert [row["job"] for row in rows] == ["0"]
    assert rows[0]["val_acc"] is not None and rows[0]["epoch"] == 1


def _hydra(launcher: dict | None, mode: RunMode = RunMode.MULTIRUN) -> object:
    return OmegaConf.create({"mode": mode, "launcher": launcher or {}})


JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


@pytest.mark.parametrize(("hydra_cfg", "jobs"), [
    (None, 1),
    (_hydra({"_target_": JOBLIB, "n_jobs": 4}, RunMode.RUN), 1),
    (_hydra({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}), 1),
    (_hydra({"_target_": JOBLIB, "n_jobs": 3}), 3),
    (_hydra({"_target_": JOBLIB, "n_jobs": -1}), 8),
    (_hydra({"_target_": JOBLIB, "n_jobs": -2}), 7),
])
def test_parallel_jobs_counts_the_joblib_launchers_jobs(hydra_cfg: object, jobs: int) -> None:
    assert parallel_jobs(hydra_cfg, cores=8) == jobs


def test_thread_share_splits_the_cores() -> None:
    assert [thread_share(16, n) for n in (1, 2, 3, 4, 32)] == [16, 8, 5, 4, 1]
    assert thread_share(16, 2, limit=4) == 4 and thread_share(2, 4) == 1


def test_cpu_processes_counts_ddp_ranks_on_the_cpu() -> None:
    assert cpu_processes({"accelerator": "cpu", "strategy": "ddp", "devices": 2}) == 2
    assert cpu_processes({"accelerator": "cpu", "strategy": "auto", "devices": 1}) == 1
    assert cpu_processes({"accelerator": "gpu", "strategy": "ddp", "devices": 4}) == 1


def test_share_threads_sets_torch_and_omp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "available_cores", lambda: 16)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    ddp = {"accelerator": "cpu", "strategy": "ddp", "devices": 2}
    try:
        assert share_threads(None, {"accelerator": "cpu", "strategy": "auto"}, jobs=1) is None
        assert share_threads(None, ddp, jobs=2) == 4
        assert torch.get_num_threads() == 4 and os.environ["OMP_NUM_THREADS"] == "4"
        assert share_threads(None, ddp, jobs=4) == 2  # the 4 set above is only an upper limit
        assert share_threads(3, ddp, jobs=4) == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_joblib_sweep_runs_jobs_in_parallel_each_on_its_share(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    proc = run_sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1",
                     *ONE_EPOCH, f"hydra.sweep.dir={sweep_dir}",
                     "+hydra.callbacks.probe._target_=helpers.thread_probe.ThreadProbe")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name for p in sweep_dir.iterdir()} == {"0", "1", *SUMMARY_FILES}
    share = max(1, available_cores() // 2)
    for job in ("0", "1"):
        assert json.loads((sweep_dir / job / "threads.json").read_text()) == {
            "torch": share, "omp": str(share)}
    rows = json.loads((sweep_dir / "summary.json").read_text())
    assert [(row["job"], row["seed"]) for row in rows] == [("0", 0), ("1", 1)]
    assert all(row["genotype"].startswith("Genotype(normal=[") for row in rows)


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]],
                         ids=["sequential", "joblib"])
def test_ddp_sweep_writes_only_into_its_job_dirs(tmp_path: Path, launcher: list[str]) -> None:
    # A sweep dir named to the microsecond: rank processes that ran the command line again would
    # make a second one.
    proc = run_sweep(tmp_path, *launcher, "seed=0,1", *ONE_EPOCH, "trainer.strategy=ddp",
                     "trainer.devices=2", "hydra.sweep.dir=sweeps/${now:%H-%M-%S-%f}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["sweeps"]
    (sweep_dir,) = (tmp_path / "sweeps").iterdir()
    assert {p.name for p in sweep_dir.iterdir()} == {"0", "1", *SUMMARY_FILES}
    rows = json.loads((sweep_dir / "summary.json").read_text())
    assert [(row["job"], row["seed"]) for row in rows] == [("0", 0), ("1", 1)]
    assert proc.stdout.count("sweep summary:") == 1


def test_submitit_local_sweep_writes_each_job_and_the_summary(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    proc = run_sweep(tmp_path, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
                     "seed=0,1", *ONE_EPOCH, "threads=1", f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name for p in sweep_dir.iterdir()} == {"0", "1", ".submitit", *SUMMARY_FILES}
    rows = json.loads((sweep_dir / "summary.json").read_text())
    assert [(row["job"], row["seed"]) for row in rows] == [("0", 0), ("1", 1)]


def test_slurm_launcher_preset_composes() -> None:
    from hydra import compose, initialize_config_module

    with initialize_config_module("oneshot.conf.search", version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.max_num_timeout) == ("gpu", 1440, 0)


def test_unknown_launcher_is_refused_in_one_line(tmp_path: Path) -> None:
    proc = run_sweep(tmp_path, "hydra/launcher=nosuch", "seed=0,1", *ONE_EPOCH)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["error: In 'hydra/config': Could not find 'hydra/launcher/nosuch'"]
    assert list(tmp_path.iterdir()) == []
