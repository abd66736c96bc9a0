"""Resuming a search: a run killed mid-epoch and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import compose_search
from oneshot.checkpointing import load_checkpoint_file, save_atomic
from oneshot.errors import ConfigError
from oneshot.resume import find_resume_point
from oneshot.train import train

HELPERS = Path(__file__).parent / "helpers"
THREE_EPOCHS = "trainer.max_epochs=3"


def _alphas(run_dir: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint_file(run_dir / "checkpoints" / "last.ckpt")["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("arch.")}


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("resume")
    killed = root / "killed"
    proc = subprocess.run([sys.executable, str(HELPERS / "killed_search.py"), str(killed), "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    epoch_after_kill = load_checkpoint_file(killed / "checkpoints" / "last.ckpt")["epoch"]
    train(compose_search(f"resume={killed}"))
    uninterrupted = root / "uninterrupted"
    train(compose_search(THREE_EPOCHS, f"run_dir={uninterrupted}"))
    return {"killed": killed, "uninterrupted": uninterrupted, "epoch_after_kill": epoch_after_kill}


def test_kill_leaves_the_last_epoch_checkpoint(killed_and_resumed: dict) -> None:
    assert killed_and_resumed["epoch_after_kill"] == 0


def test_resumed_search_matches_uninterrupted(killed_and_resumed: dict) -> None:
    resumed, straight = _alphas(killed_and_resumed["killed"]), _alphas(killed_and_resumed["uninterrupted"])
    assert resumed.keys() == straight.keys() and len(resumed) == 28
    for key in resumed:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6)
    final = [json.loads((killed_and_resumed[name] / "genotype.json").read_text())
             for name in ("killed", "uninterrupted")]
    assert final[0]["genotype"] == final[1]["genotype"]
    assert final[0]["meta"]["epoch"] == final[1]["meta"]["epoch"] == 2
    assert sorted(os.listdir(killed_and_resumed["killed"] / "genotypes")) == [
        "epoch_000.json", "epoch_001.json", "epoch_002.json"]


def test_resume_uses_the_saved_config(killed_and_resumed: dict) -> None:
    point = find_resume_point(killed_and_resumed["killed"] / "checkpoints" / "last.ckpt")
    assert point.run_dir == killed_and_resumed["killed"]
    assert point.config.trainer.max_epochs == 3


def test_resume_from_nowhere(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such run dir"):
        train(compose_search(f"resume={tmp_path / 'missing'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="before its first epoch ended"):
        train(compose_search(f"resume={tmp_path / 'empty'}"))


def _run_dir_with(tmp_path: Path, checkpoint_bytes: bytes) -> Path:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(checkpoint_bytes)
    (run_dir / "config.yaml").write_text("seed: 0\n")
    return run_dir


@pytest.mark.parametrize("payload", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated zip"])
def test_corrupt_checkpoint_is_one_line(tmp_path: Path, payload: bytes) -> None:
    run_dir = _run_dir_with(tmp_path, payload)
    with pytest.raises(ConfigError, match="cannot read checkpoint") as err:
        load_checkpoint_file(find_resume_point(run_dir).checkpoint)
    assert "\n" not in str(err.value)


def test_truncated_real_checkpoint(search_run: dict, tmp_path: Path) -> None:
    data = (search_run["run_dir"] / "checkpoints" / "last.ckpt").read_bytes()
    run_dir = _run_dir_with(tmp_path, data[: len(data) // 2])
    (run_dir / "config.yaml").write_text((search_run["run_dir"] / "config.yaml").read_text())
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        train(compose_search(f"resume={run_dir}"))


def test_checkpoint_of_another_algorithm_is_refused(search_run: dict, tmp_path: Path) -> None:
    checkpoint = load_checkpoint_file(search_run["run_dir"] / "checkpoints" / "last.ckpt")
    checkpoint["hyper_parameters"]["algorithm"] = "gdas"
    checkpoint["oneshot"]["space"] = "nb201"
    run_dir = tmp_path / "run"
    save_atomic(checkpoint, run_dir / "checkpoints" / "last.ckpt")
    (run_dir / "config.yaml").write_text((search_run["run_dir"] / "config.yaml").read_text())
    with pytest.raises(ConfigError, match="space=nb201 algorithm=gdas, not space=darts algorithm=darts"):
        train(compose_search(f"resume={run_dir}"))


def test_atomic_save_leaves_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    save_atomic({"state_dict": {"w": torch.ones(2)}}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_atomic({"state_dict": {}, "bad": Unpicklable()}, path)
    assert torch.equal(load_checkpoint_file(path)["state_dict"]["w"], torch.ones(2))
    assert os.listdir(tmp_path) == ["last.ckpt"]
