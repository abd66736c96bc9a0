"""After a Hydra multirun, one table of every job's genotype and validation accuracy."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from oneshot.storage.files import write_atomic
from oneshot.storage.genotypes import load_genotype
from supernets.errors import GenotypeError

SUMMARY_FIELDS = ("job", "overrides", "seed", "epoch", "val_acc", "genotype", "run_dir")


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


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, summarize the jobs in the sweep dir."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir():
            csv_path, _ = write_summary(sweep_dir, summarize_sweep(sweep_dir))
            print(f"sweep summary: {csv_path}")
