"""Hydra multirun: one run dir per job and a summary of the genotypes across seeds."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import TINY_SEARCH
from oneshot.storage.sweep import summarize_sweep


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
