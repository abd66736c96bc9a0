"""benchmarks/gpu_check.py, smoke-tested on the CPU as the GPU run will use it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gpu_check  # noqa: E402


def test_cpu_smoke_prints_a_row_per_configuration_and_the_search_estimate() -> None:
    lines: list[str] = []
    args = gpu_check.parse_args(["--device", "cpu", "--small", "--warmup", "1", "--steps", "1",
                                 "--precisions", "32-true",
                                 "--only", "search darts first 32-true cl=1 compile=0",
                                 "--only", "retrain DARTS_V2 - 32-true cl=1 compile=0"])
    rows = gpu_check.run_all(args, report=lines.append)
    assert [row["config"].kind for row in rows] == ["search", "retrain"]
    table = [line for line in lines if line.startswith("| search") or line.startswith("| retrain")]
    assert len(table) == 2 and not any("failed" in line for line in table)
    for row in rows:
        assert row["median"] > 0 and row["peak"] > 0 and row["syncs"] == 0
    estimate = [line for line in lines if line.startswith("estimated full search")]
    hours = float(estimate[0].rsplit(": ", 1)[1].removesuffix(" h"))
    assert hours == pytest.approx(gpu_check.search_hours(rows[0]["median"], rows[0]["validation"]),
                                  rel=0.01)


def test_search_estimate_counts_every_step_and_validation_image_of_50_epochs() -> None:
    assert gpu_check.search_hours(1.0, 0.0) == pytest.approx(50 * 391 / 3600)
    assert gpu_check.search_hours(0.0, 1e-3) == pytest.approx(50 * 25_000 * 1e-3 / 3600)


def test_the_grid_covers_orders_precisions_layouts_compile_and_the_retrain_step() -> None:
    grid = gpu_check.configurations(("32-true", "bf16-mixed"))
    darts = [c for c in grid if c.kind == "search" and c.algorithm == "darts" and not c.compile]
    assert {(c.order, c.precision, c.channels_last) for c in darts} == {
        (o, p, cl) for o in ("first", "second") for p in ("32-true", "bf16-mixed") for cl in (True, False)}
    assert any(c.compile for c in grid if c.kind == "search")
    assert {c.algorithm for c in grid if c.kind == "retrain"} == {"DARTS_V2"}
    assert {"pcdarts", "gdas"} <= {c.algorithm for c in grid}
