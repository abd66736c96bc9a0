"""Faults during a search: full disk, NaN loss; one-line errors, exit code 2, checkpoint kept."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import oneshot.storage.checkpointing as checkpointing
import oneshot.train as train_module
from conftest import compose_search
from oneshot.commandline.checks import report_user_errors
from oneshot.storage.checkpointing import load_checkpoint_file
from oneshot.errors import NonFiniteLossError
from oneshot.train import train


def test_full_disk_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture) -> None:
    def no_space(checkpoint: dict, path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpointing, "save_atomic", no_space)
    with pytest.raises(SystemExit) as exited:
        report_user_errors(train)(compose_search(f"run_dir={tmp_path / 'run'}", "trainer.max_epochs=1"))
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("error: cannot write ") and "last.ckpt: No space left on device" in err


def test_other_os_errors_are_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(checkpoint: dict, path: Path) -> None:
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(checkpointing, "save_atomic", broken)
    with pytest.raises(OSError, match="Input/output error"):
        report_user_errors(train)(compose_search(f"run_dir={tmp_path / 'run'}", "trainer.max_epochs=1"))
    assert not (tmp_path / "run").exists()  # no checkpoint was written: nothing is kept


def test_a_crash_takes_back_the_run_dir_and_keeps_its_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(cfg: object, run_dir: Path, callbacks: list) -> None:
        assert run_dir.is_dir()  # the run has made its run dir
        (run_dir / "partial.txt").write_text("written before the crash")
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(train_module, "build_trainer", crash)
    (tmp_path / "keep").mkdir()
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        report_user_errors(train)(compose_search(f"run_dir={tmp_path / 'keep' / 'run'}"))
    assert list((tmp_path / "keep").iterdir()) == []  # the directory made by the run is gone


class PoisonWeights(pl.Callback):
    """Fill the supernet weights with NaN at the start of epoch ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                for weight in pl_module.supernet.parameters():
                    weight.fill_(float("nan"))


def _poison_at(epoch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    build = train_module.build_trainer
    monkeypatch.setattr(train_module, "build_trainer", lambda cfg, run_dir, callbacks: build(
        cfg, run_dir, [*callbacks, PoisonWeights(epoch)]))


def test_nan_in_a_later_epoch_keeps_the_last_good_checkpoint(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _poison_at(1, monkeypatch)
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 1, batch 0") as err:
        train_module.train(compose_search(f"run_dir={run_dir}", "trainer.max_epochs=3"))
    assert str(err.value).endswith(
        f"the search stopped and kept its last good checkpoint, {run_dir}/checkpoints/last.ckpt "
        f"(resume={run_dir} continues from it)")
    checkpoint = load_checkpoint_file(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())


def test_nan_in_the_first_epoch_says_nothing_was_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    _poison_at(0, monkeypatch)
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        report_user_errors(train)(compose_search(f"run_dir={run_dir}", "trainer.max_epochs=2"))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "loss became nan at epoch 0, batch 0" in err
    assert err.rstrip().endswith("the search stopped before its first epoch ended, so it kept no "
                                 "checkpoint to resume from")
    assert "last good checkpoint" not in err
    assert not run_dir.exists()  # what the run wrote is removed: nothing there to resume
