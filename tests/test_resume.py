"""Resuming a search: a run killed mid-epoch and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_search
from oneshot.search.algorithms import list_algorithms, supported_spaces
from test_algorithm_spaces import ALGORITHM_TINY
from oneshot.storage.checkpointing import load_checkpoint_file, save_atomic
from oneshot.errors import ConfigError
from oneshot.storage.genotypes import load_genotype
from oneshot.search.resume import find_resume_point
from oneshot.train import train
from supernets.errors import GenotypeError

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


def assert_same_search(resumed_dir: Path, straight_dir: Path) -> None:
    """The resumed search ended with the alphas, genotype and per-epoch genotypes of the other."""
    resumed, straight = _alphas(resumed_dir), _alphas(straight_dir)
    assert resumed.keys() == straight.keys() and len(resumed) == 28
    for key in resumed:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6)
    final = [json.loads((run_dir / "genotype.json").read_text()) for run_dir in (resumed_dir, straight_dir)]
    assert final[0]["genotype"] == final[1]["genotype"]
    assert final[0]["meta"]["epoch"] == final[1]["meta"]["epoch"] == 2
    assert sorted(os.listdir(resumed_dir / "genotypes")) == [
        "epoch_000.json", "epoch_001.json", "epoch_002.json"]


def test_resumed_search_matches_uninterrupted(killed_and_resumed: dict) -> None:
    assert_same_search(killed_and_resumed["killed"], killed_and_resumed["uninterrupted"])


def _position(checkpoint_path: Path) -> tuple[int, int, list[dict]]:
    """(epoch, training steps done, the loaders' saved positions) of a checkpoint."""
    checkpoint = load_checkpoint_file(checkpoint_path)
    loops = checkpoint["loops"]["fit_loop"]
    return (checkpoint["epoch"], loops["epoch_loop.batch_progress"]["total"]["ready"],
            loops["state_dict"]["combined_loader"])


# 4 steps per epoch. A kill after the last step of an epoch (0:3) finds the checkpoint of the
# step before it: one written at an epoch's last step would skip that epoch's end on resume.
@pytest.mark.parametrize("kill_at, inside, steps", [
    ("0:1", "checkpoint.every_n_steps=1", 2), ("1:2", "checkpoint.every_n_steps=1", 7),
    ("0:3", "checkpoint.every_n_steps=1", 3), ("1:1", "checkpoint.every_n_steps=3", 6),
    ("0:2", "checkpoint.every_minutes=0.000001", 3)])
def test_killed_inside_an_epoch_resumes_exactly(killed_and_resumed: dict, tmp_path: Path,
                                                kill_at: str, inside: str, steps: int) -> None:
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, str(HELPERS / "killed_search.py"), str(killed), kill_at,
                           inside], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    epoch, done, loaders = _position(killed / "checkpoints" / "last.ckpt")
    assert (epoch, done) == (steps // 4, steps)
    assert loaders == [{"epoch": epoch, "batches": steps % 4}] * 2  # the weight and the alpha half
    before = signal.getsignal(signal.SIGINT)  # an xdist worker ignores SIGINT, python does not
    train(compose_search(f"resume={killed}"))
    assert_same_search(killed, killed_and_resumed["uninterrupted"])
    assert signal.getsignal(signal.SIGINT) is before  # handlers given back


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


class NotATensor:
    """An object a checkpoint written by oneshot never holds."""


def _with_an_object() -> bytes:
    buffer = io.BytesIO()
    torch.save({"state_dict": {}, "extra": NotATensor()}, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("payload, reason", [
    (b"", "the file is empty"),
    (b"not a checkpoint at all", "it is not a PyTorch checkpoint file (or it is damaged)"),
    (b"PK\x03\x04truncated zip", "the file is truncated or damaged (17 bytes, its end is missing)"),
    (_with_an_object(), "it holds Python objects other than tensors and plain values, which "
                        "oneshot never writes; it is not loaded, since loading such objects can run code"),
])
def test_corrupt_checkpoint_says_what_is_wrong(tmp_path: Path, payload: bytes, reason: str) -> None:
    run_dir = _run_dir_with(tmp_path, payload)
    checkpoint = find_resume_point(run_dir).checkpoint
    with pytest.raises(ConfigError) as err:
        load_checkpoint_file(checkpoint)
    assert str(err.value) == (f"cannot read checkpoint '{checkpoint}': {reason}; resume from another "
                              "checkpoint of the search, or start it again")
    with pytest.raises(GenotypeError) as from_export:  # what oneshot.export and retrain read
        load_genotype(checkpoint)
    for message in (str(err.value), str(from_export.value)):
        assert "\n" not in message and reason in message
        assert "weights_only" not in message and "torch.load" not in message


def test_truncated_real_checkpoint(search_run: dict, tmp_path: Path) -> None:
    data = (search_run["run_dir"] / "checkpoints" / "last.ckpt").read_bytes()
    run_dir = _run_dir_with(tmp_path, data[: len(data) // 2])
    (run_dir / "config.yaml").write_text((search_run["run_dir"] / "config.yaml").read_text())
    with pytest.raises(ConfigError, match="cannot read checkpoint .*: the file is truncated or damaged"):
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


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished search of one epoch (copied by each test that resumes it)."""
    run_dir = tmp_path_factory.mktemp("one_epoch") / "run"
    train(compose_search(f"run_dir={run_dir}", "trainer.max_epochs=1"))
    return run_dir


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def test_max_epochs_extends_a_finished_search(one_epoch: Path, tmp_path: Path, recwarn,
                                              capsys: pytest.CaptureFixture) -> None:
    run_dir = _copy(one_epoch, tmp_path)
    train(compose_search(f"resume={run_dir}"), overrides=[f"resume={run_dir}", "trainer.max_epochs=2"])
    assert sorted(os.listdir(run_dir / "genotypes")) == ["epoch_000.json", "epoch_001.json"]
    assert OmegaConf.load(run_dir / "config.yaml").trainer.max_epochs == 2
    checkpoint = load_checkpoint_file(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["epoch"] == 1
    assert checkpoint["lr_schedulers"][0]["T_max"] == 2  # re-planned: epoch 1 is halfway down
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx((0.025 + 0.001) / 2)
    assert "ignored" not in capsys.readouterr().err
    assert not [w for w in recwarn if "lr_scheduler.step()" in str(w.message)]  # none on resume


def test_other_overrides_are_named_as_ignored(one_epoch: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    run_dir = _copy(one_epoch, tmp_path)
    config_before = (run_dir / "config.yaml").read_text()
    train(compose_search(f"resume={run_dir}"),
          overrides=[f"resume={run_dir}", "seed=5", "task.subset=10"])
    err = capsys.readouterr().err
    assert (f"warning: resume continues with {run_dir / 'config.yaml'}, so seed=5, task.subset=10 "
            "are ignored (only trainer.max_epochs can change, to extend the search)\n") in err
    assert (run_dir / "config.yaml").read_text() == config_before
    assert sorted(os.listdir(run_dir / "genotypes")) == ["epoch_000.json"]


def test_max_epochs_that_does_not_extend_is_refused(one_epoch: Path, tmp_path: Path) -> None:
    run_dir = _copy(one_epoch, tmp_path)
    config = OmegaConf.load(run_dir / "config.yaml")
    config.trainer.max_epochs = 5  # as a search of 5 epochs stopped after its first
    OmegaConf.save(config, run_dir / "config.yaml")
    with pytest.raises(ConfigError, match=r"^trainer.max_epochs=1 does not extend the search: it has "
                                          r"finished 1 epochs; pass a larger value$"):
        train(compose_search(f"resume={run_dir}"), overrides=["trainer.max_epochs=1"])


def test_command_line_resume_extends_and_names_what_it_ignores(one_epoch: Path, tmp_path: Path) -> None:
    run_dir = _copy(one_epoch, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "oneshot.train", f"resume={run_dir}",
                           f"hydra.run.dir={run_dir}", "trainer.max_epochs=2", "seed=5"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: resume")]
    assert warnings == [f"warning: resume continues with {run_dir / 'config.yaml'}, so seed=5 is "
                        "ignored (only trainer.max_epochs can change, to extend the search)"]
    assert (run_dir / "genotypes" / "epoch_001.json").is_file()
    assert OmegaConf.load(run_dir / "config.yaml").trainer.max_epochs == 2
    assert "lr_scheduler.step()" not in proc.stderr
    assert not list(run_dir.glob("*.log"))  # no empty Hydra job log
    assert proc.stdout.count("genotype: ") == 1 and f"outputs: {run_dir}" in proc.stdout
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no Hydra dir of its own left beside it


def test_checkpoint_written_before_the_choices_redesign_resumes(tmp_path: Path) -> None:
    # tests/data/search_before_choices: config.yaml and checkpoints/last.ckpt of a 1-epoch DARTS
    # search written by oneshot before spaces were built from OpChoice (state-dict keys unchanged).
    run_dir = tmp_path / "old"
    shutil.copytree(Path(__file__).parent / "data" / "search_before_choices", run_dir)
    before = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    result = train(compose_search(f"resume={run_dir}"),
                   overrides=[f"resume={run_dir}", "trainer.max_epochs=2"])
    after = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert set(after["state_dict"]) == set(before["state_dict"])
    assert after["epoch"] == 1 and (run_dir / "genotypes" / "epoch_001.json").is_file()
    assert result["genotype"].steps == 2


@pytest.mark.parametrize("algorithm", [a for a in list_algorithms()
                                       if a != "darts" and "darts" in supported_spaces(a)])
def test_every_algorithm_resumes_a_mid_epoch_checkpoint_exactly(tmp_path: Path,
                                                                 algorithm: str) -> None:
    options = [f"algorithm={algorithm}", "trainer.max_epochs=1", *ALGORITHM_TINY.get(algorithm, ())]
    killed = tmp_path / "killed"
    proc = subprocess.run([sys.executable, str(HELPERS / "killed_search.py"), str(killed), "0:1",
                           "checkpoint.every_n_steps=1", *options],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert _position(killed / "checkpoints" / "last.ckpt")[:2] == (0, 2)
    train(compose_search(f"resume={killed}"))
    straight = tmp_path / "straight"
    train(compose_search(f"run_dir={straight}", *options))
    resumed_state, straight_state = (load_checkpoint_file(d / "checkpoints" / "last.ckpt")["state_dict"]
                                     for d in (killed, straight))
    assert resumed_state.keys() == straight_state.keys()
    for key, value in straight_state.items():
        torch.testing.assert_close(resumed_state[key], value, rtol=0, atol=1e-6, msg=key)
    genotypes = [json.loads((d / "genotype.json").read_text())["genotype"] for d in (killed, straight)]
    assert genotypes[0] == genotypes[1]
