"""benchmarks/data_pipeline.py runs the real loop over augmented search batches and times it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import data_pipeline  # noqa: E402


def test_times_every_step_and_prints_the_share_of_a_step(capsys) -> None:
    data_pipeline.main(["--batch", "4", "--warmup", "2", "--steps", "5", "--device", "cpu",
                        "--step-seconds", "1.0"])
    header, line = capsys.readouterr().out.strip().splitlines()[-2:]
    assert header == "data pipeline + loop | batch 4 per half | threads " + header.rsplit(" ", 1)[1]
    assert line.strip().startswith("s/step over 5 steps: median ")
    share = float(line.split("| ")[1].split("%")[0])
    median = float(line.split("median ")[1].split()[0])
    assert share == pytest.approx(100 * median / (median + 1.0), abs=0.011)  # both printed rounded
