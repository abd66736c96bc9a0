"""DDP on two CPU processes (gloo): every algorithm keeps one architecture state and the same
weights on every rank after every step, and derives one genotype; the runtime check that ranks
agree on the genotype."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from oneshot import errors
from oneshot.errors import DivergedProcessesError
from oneshot.search.algorithms import list_algorithms, supported_spaces
from oneshot.search.callbacks import GenotypeAgreement, genotype_hash
from oneshot.search.distributed import SearchDDPStrategy, make_strategy
from test_algorithm_spaces import ALGORITHM_TINY, SPACE_TINY

HELPERS = Path(__file__).parent / "helpers"
RUNS = [f"{algorithm}-{space}" for algorithm in list_algorithms() for space in supported_spaces(algorithm)]
SAMPLING = [run for run in RUNS if run.startswith(("enas-", "spos-"))]


def run_overrides(run: str) -> list[str]:
    """The tiny search ``ALGORITHM-SPACE``: darts-darts two epochs (4 steps), the others one
    (2 steps: 32 images per half, 2 ranks, batch 8)."""
    algorithm, space = run.split("-")
    epochs = 2 if run == "darts-darts" else 1
    return [f"algorithm={algorithm}", *SPACE_TINY[space], *ALGORITHM_TINY.get(algorithm, ()),
            f"trainer.max_epochs={epochs}"]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every declared algorithm and space searched, one after the other in one launch of two
    processes (one thread each)."""
    out_dir = tmp_path_factory.mktemp("ddp")
    runs = {run: run_overrides(run) for run in RUNS}
    proc = subprocess.run([sys.executable, str(HELPERS / "ddp_search.py"), str(out_dir), json.dumps(runs)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out_dir / "stdout.txt").write_text(proc.stdout)  # both ranks' standard output
    return out_dir


def _ranks(run_dir: Path) -> tuple[dict, dict]:
    return tuple(torch.load(run_dir / f"rank{rank}.pt", weights_only=True) for rank in (0, 1))


@pytest.mark.parametrize("run", RUNS)
def test_ranks_hold_the_same_architecture_state_after_every_step(ddp_runs: Path, run: str) -> None:
    rank0, rank1 = _ranks(ddp_runs / run)
    assert len(rank0["states"]) == (4 if run == "darts-darts" else 2)
    torch.testing.assert_close(rank0["states"], rank1["states"], rtol=0, atol=0)
    assert rank0["genotypes"] == rank1["genotypes"]
    if not run.startswith("spos-"):  # SPOS has no architecture parameters
        assert not torch.equal(rank0["states"][0], rank0["states"][-1])


@pytest.mark.parametrize("run", SAMPLING)
def test_ranks_draw_the_same_architectures(ddp_runs: Path, run: str) -> None:
    rank0, rank1 = _ranks(ddp_runs / run)
    assert len(rank0["draws"]) >= 2 and rank0["draws"] == rank1["draws"]


@pytest.mark.parametrize("run", RUNS)
def test_ranks_hold_the_same_weights(ddp_runs: Path, run: str) -> None:
    rank0, rank1 = _ranks(ddp_runs / run)
    params = [k for k in rank0["weights"] if "running_" not in k and "num_batches" not in k]
    assert params
    for key in params:
        torch.testing.assert_close(rank0["weights"][key], rank1["weights"][key], rtol=0, atol=0)


@pytest.mark.parametrize("run", RUNS)
def test_written_genotype_is_what_every_rank_derives(ddp_runs: Path, run: str) -> None:
    document = json.loads((ddp_runs / run / "genotype.json").read_text())
    rank0, rank1 = _ranks(ddp_runs / run)
    assert document["genotype"] == rank0["genotype"] == rank1["genotype"]
    assert document["meta"]["world_size"] == 2


def test_result_is_printed_once(ddp_runs: Path) -> None:
    stdout = (ddp_runs / "stdout.txt").read_text()
    assert stdout.count("genotype: ") == len(RUNS) and stdout.count("outputs: ") == len(RUNS), stdout


def test_one_process_search_records_world_size_1(search_run: dict) -> None:
    document = json.loads((search_run["run_dir"] / "genotype.json").read_text())
    assert document["meta"]["world_size"] == 1


def test_ddp_names_map_to_the_search_strategy() -> None:
    strategy = make_strategy("ddp")
    assert isinstance(strategy, SearchDDPStrategy) and strategy._start_method == "popen"
    assert make_strategy("ddp_spawn")._start_method == "spawn"
    assert make_strategy("auto") == "auto"


class FakeStrategy:
    """All-gathers what every rank holds: ``hashes`` (one per rank), whatever it is given."""

    def __init__(self, hashes: list[int]) -> None:
        self.hashes = hashes
        self.gathered: list[torch.Tensor] = []

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        self.gathered.append(tensor)
        return torch.tensor(self.hashes, dtype=torch.long).view(-1, 1)


def _agreement_check(hashes: list[int], genotype: str = "G") -> FakeStrategy:
    """Run the end-of-epoch check of epoch 3 on rank 0 holding ``genotype``."""
    strategy = FakeStrategy(hashes)
    trainer = SimpleNamespace(world_size=len(hashes), current_epoch=3, strategy=strategy)
    module = SimpleNamespace(genotype=lambda: genotype, device=torch.device("cpu"))
    GenotypeAgreement().on_train_epoch_end(trainer, module)
    return strategy


def test_genotype_hash_is_the_text_hash() -> None:
    assert genotype_hash("Genotype(a)") == genotype_hash("Genotype(a)") != genotype_hash("Genotype(b)")
    assert genotype_hash("G") == int(hashlib.sha256(b"G").hexdigest()[:16], 16) >> 1


def test_agreeing_ranks_pass_the_check_with_their_hash_gathered() -> None:
    strategy = _agreement_check([genotype_hash("G")] * 2)
    assert [t.tolist() for t in strategy.gathered] == [[genotype_hash("G")]]


def test_one_process_gathers_nothing() -> None:
    assert _agreement_check([genotype_hash("G")]).gathered == []


@pytest.mark.parametrize("hashes, ranks", [([1, 2], "rank 1 differs"),
                                           ([1, 1, 2, 3], "ranks 2, 3 differ")])
def test_disagreeing_ranks_stop_the_search_in_one_line(hashes: list[int], ranks: str) -> None:
    with pytest.raises(DivergedProcessesError) as info:
        _agreement_check(hashes)
    assert str(info.value) == (
        f"the {len(hashes)} processes derived different genotypes at the end of epoch 3 ({ranks} "
        "from rank 0), so their architecture states diverged; search on one process "
        "(trainer.devices=1) and report this with the run's config.yaml")
    assert isinstance(info.value, errors.USER_ERRORS)  # one line, exit 2 (report_user_errors)
