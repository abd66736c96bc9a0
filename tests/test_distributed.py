"""DDP on two CPU processes (gloo): every rank keeps the same alphas and weights, one genotype."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from oneshot.search.distributed import SearchDDPStrategy, make_strategy

HELPERS = Path(__file__).parent / "helpers"


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("ddp")
    proc = subprocess.run([sys.executable, str(HELPERS / "ddp_search.py"), str(run_dir)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir / "stdout.txt").write_text(proc.stdout)  # both ranks' standard output
    return run_dir


def _rank(run_dir: Path, rank: int) -> dict:
    return torch.load(run_dir / f"rank{rank}.pt", weights_only=True)


def test_ranks_hold_the_same_alphas_after_every_step(ddp_run: Path) -> None:
    rank0, rank1 = _rank(ddp_run, 0), _rank(ddp_run, 1)
    assert rank0["alphas"].shape == (4, 224)  # 2 epochs x 2 steps (32 images per half, 2 ranks, batch 8)
    torch.testing.assert_close(rank0["alphas"], rank1["alphas"], rtol=0, atol=0)
    assert not torch.equal(rank0["alphas"][0], rank0["alphas"][-1])


def test_ranks_hold_the_same_weights(ddp_run: Path) -> None:
    rank0, rank1 = _rank(ddp_run, 0), _rank(ddp_run, 1)
    params = [k for k in rank0["weights"] if "running_" not in k and "num_batches" not in k]
    assert params
    for key in params:
        torch.testing.assert_close(rank0["weights"][key], rank1["weights"][key], rtol=0, atol=0)


def test_written_genotype_is_what_every_rank_derives(ddp_run: Path) -> None:
    written = json.loads((ddp_run / "genotype.json").read_text())["genotype"]
    assert written == _rank(ddp_run, 0)["genotype"] == _rank(ddp_run, 1)["genotype"]


def test_result_is_printed_once(ddp_run: Path) -> None:
    stdout = (ddp_run / "stdout.txt").read_text()
    assert stdout.count("genotype: ") == 1 and stdout.count("outputs: ") == 1, stdout


def test_ddp_names_map_to_the_search_strategy() -> None:
    strategy = make_strategy("ddp")
    assert isinstance(strategy, SearchDDPStrategy) and strategy._start_method == "popen"
    assert make_strategy("ddp_spawn")._start_method == "spawn"
    assert make_strategy("auto") == "auto"
