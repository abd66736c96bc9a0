"""Hydra multiruns: how many jobs share this machine, DDP rank processes that stay inside their
job, and after the sweep one table of every job's genotype and validation accuracy."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import __main__
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from oneshot.storage.files import write_atomic
from oneshot.storage.genotypes import load_genotype
from supernets.errors import GenotypeError

SUMMARY_FIELDS = ("job", "overrides", "seed", "epoch", "val_acc", "genotype", "run_dir")
PARALLEL_LAUNCHERS = ("JoblibLauncher",)  # launchers that run several jobs at once on this machine
DDP_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
"""What Lightning's DDP launcher sets in the first process: left set, the next job of the same
process would take its ranks as already started (restored after each job)."""
ENTRY_MODULE = "oneshot.train"


def parallel_jobs(hydra_cfg: Any, cores: int) -> int:
    """How many jobs of this sweep run at once on this machine, by ``hydra_cfg`` (the Hydra config
    of the running job, ``None`` outside Hydra): ``hydra.launcher.n_jobs`` of the joblib launcher
    (in joblib's meaning: -1 is ``cores``, -2 all but one), else 1 (one job at a time, or one
    machine per job)."""
    if hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN:
        return 1
    launcher = hydra_cfg.get("launcher") or {}
    if not str(launcher.get("_target_", "")).endswith(PARALLEL_LAUNCHERS):
        return 1
    n_jobs = launcher.get("n_jobs") or 1
    return max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)


def running_hydra_config() -> Any:
    """The Hydra config of the running job, or ``None`` outside Hydra."""
    return HydraConfig.get() if HydraConfig.initialized() else None


def summarize_sweep(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job dir of ``sweep_dir`` that holds a ``genotype.json``, in job order."""
    rows = []
    job_dirs = sorted((p for p in sweep_dir.iterdir() if (p / "genotype.json").is_file()),
                      key=lambda p: (len(p.name), p.name))
    for job_dir in job_dirs:
        try:
            loaded = load_genotype(job_dir / "genotype.json")
        except GenotypeError:
            continue
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides = list(OmegaConf.load(overrides_file)) if overrides_file.is_file() else []
        rows.append({"job": job_dir.name, "overrides": " ".join(overrides or []),
                     "seed": loaded.meta.get("seed"), "epoch": loaded.meta.get("epoch"),
                     "val_acc": loaded.meta.get("val_acc"), "genotype": str(loaded.genotype),
                     "run_dir": str(job_dir)})
    return rows


def write_summary(sweep_dir: Path, rows: list[dict[str, Any]]) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.json`` into ``sweep_dir`` (each atomically)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    outputs = (sweep_dir / "summary.csv", sweep_dir / "summary.json")
    for path, text in zip(outputs, (buffer.getvalue(), json.dumps(rows, indent=2) + "\n")):
        write_atomic(path, text.encode("utf-8"))
    return outputs


class RanksStayInJob(Callback):
    """Hydra callback: the DDP rank processes of a multirun job run that job alone, in its dir.

    Lightning starts ranks 1.. by running the command line again with ``hydra.run.dir`` set to
    Hydra's *run* dir. In a multirun that repeats the whole sweep in another (timestamped) sweep
    dir, or, under the joblib launcher, runs the worker's own command. For the job's duration the
    command line is made this job's: ``python -m oneshot.train <the job's overrides>`` in the
    job's output dir. After the job, what the launcher left in this process goes, so that the next
    job of a sequential sweep starts its own ranks.
    """

    def __init__(self) -> None:
        self._saved: tuple[list[str], Any, dict[str, str | None]] | None = None

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        self._saved = (sys.argv, getattr(__main__, "__spec__", None),
                       {name: os.environ.get(name) for name in DDP_VARIABLES})
        sys.argv = [sys.argv[0], *config.hydra.overrides.task]
        __main__.__spec__ = importlib.util.find_spec(ENTRY_MODULE)
        hydra_node = HydraConfig.get()
        with read_write(hydra_node), open_dict(hydra_node):
            hydra_node.run.dir = config.hydra.runtime.output_dir

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self._saved is None:
            return
        sys.argv, __main__.__spec__, environment = self._saved
        self._saved = None
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        torch = sys.modules.get("torch")
        if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, summarize the jobs in the sweep dir."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            csv_path, _ = write_summary(sweep_dir, summarize_sweep(sweep_dir))
            print(f"sweep summary: {csv_path}")
