"""Guards against the DARTS collapse into skip connections: P-DARTS derive limit, DARTS+ early stop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import compose_search
from oneshot.errors import ConfigError
from oneshot.train import train
from supernets.darts.genotype import derive_darts_genotype
from supernets.darts.search import DartsSupernet
from supernets.darts.topology import CELL_TYPES, edge_inputs, edge_label
from supernets.errors import SpaceError
from supernets.ops import DARTS_PRIMITIVES

SKIP = DARTS_PRIMITIVES.index("skip_connect")
SEP3 = DARTS_PRIMITIVES.index("sep_conv_3x3")


def _skip_heavy_weights() -> dict[str, torch.Tensor]:
    """Every edge prefers skip_connect (strength 0.5 + k/100), with sep_conv_3x3 second (0.3)."""
    weights = {}
    for cell_type in CELL_TYPES:
        for k in range(len(edge_inputs(4))):
            row = torch.full((len(DARTS_PRIMITIVES),), 0.01)
            row[SKIP] = 0.5 + k / 100
            row[SEP3] = 0.3
            weights[edge_label(cell_type, k)] = row
    return weights


def test_without_a_limit_the_cell_collapses_into_skips() -> None:
    genotype = derive_darts_genotype(_skip_heavy_weights(), DARTS_PRIMITIVES)
    assert [op for op, _ in genotype.normal] == ["skip_connect"] * 8


def test_limit_keeps_the_strongest_skips_and_rederives_the_rest() -> None:
    genotype = derive_darts_genotype(_skip_heavy_weights(), DARTS_PRIMITIVES, max_skip_connect=2)
    skips = [(op, j) for op, j in genotype.normal if op == "skip_connect"]
    assert len(skips) == 2
    # the two strongest skip weights are the last edges (k = 12, 13: node 3 from inputs 3 and 4)
    assert genotype.normal[6:] == (("skip_connect", 4), ("skip_connect", 3))
    assert all(op == "sep_conv_3x3" for op, _ in genotype.normal[:6])
    assert [op for op, _ in genotype.reduce] == ["skip_connect"] * 8  # the reduce cell is untouched


def test_limit_zero_and_bad_limits() -> None:
    genotype = derive_darts_genotype(_skip_heavy_weights(), DARTS_PRIMITIVES, max_skip_connect=0)
    assert "skip_connect" not in [op for op, _ in genotype.normal]
    with pytest.raises(SpaceError, match="max_skip_connect must be a non-negative integer"):
        derive_darts_genotype(_skip_heavy_weights(), DARTS_PRIMITIVES, max_skip_connect=-1)


def test_supernet_derive_applies_the_space_limit() -> None:
    net = DartsSupernet(channels=2, layers=3, max_skip_connect=1)
    genotype = net.derive(_skip_heavy_weights())
    assert sum(op == "skip_connect" for op, _ in genotype.normal) == 1


def test_early_stop_on_skip_connections(tmp_path: Path) -> None:
    # with skip_connect the only candidate besides none, the first epoch's cell is all skips
    run_dir = tmp_path / "run"
    result = train(compose_search(f"run_dir={run_dir}", "trainer.max_epochs=3", "early_stop.skip_connect=1",
                                  "space.candidates=[none,skip_connect]"))
    meta = json.loads((run_dir / "genotype.json").read_text())["meta"]
    assert meta["epoch"] == 0
    assert sorted(p.name for p in (run_dir / "genotypes").iterdir()) == ["epoch_000.json"]
    assert all(op == "skip_connect" for op, _ in result["genotype"].normal)


def test_early_stop_needs_the_darts_space() -> None:
    with pytest.raises(ConfigError, match="early_stop.skip_connect must be a positive integer"):
        train(compose_search("early_stop.skip_connect=0"))
