"""What pyproject.toml promises: the dependency floors cover the APIs the code calls."""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path

import pytorch_lightning as pl

ROOT = Path(__file__).resolve().parents[1]


def _floor(package: str) -> tuple[int, ...]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spec = next(d for d in project["dependencies"] if d.startswith(package))
    return tuple(int(part) for part in re.search(r">=([\d.]+)", spec).group(1).split("."))


def test_lightning_floor_has_fit_weights_only() -> None:
    # oneshot.train resumes with Trainer.fit(..., weights_only=True), added in Lightning 2.6.
    assert "weights_only" in inspect.signature(pl.Trainer.fit).parameters
    assert _floor("pytorch-lightning") >= (2, 6)
