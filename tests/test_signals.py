"""Stop signals: SIGTERM, SIGUSR1 and SIGINT save a checkpoint at the next step and exit 75."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import TINY_SEARCH, compose_search
from oneshot.errors import ConfigError
from oneshot.search.resume import finished_epochs
from oneshot.search.signals import STOPPED_EXIT_CODE, StepCheckpoint
from oneshot.storage.checkpointing import load_checkpoint_file
from oneshot.train import check_config, train
from tasks.errors import TaskError
from tasks.loader import make_loader
from test_resume import HELPERS, THREE_EPOCHS, assert_same_search


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("signals") / "uninterrupted"
    train(compose_search(THREE_EPOCHS, f"run_dir={run_dir}"))
    return run_dir


def _signalled(run_dir: Path, name: str, *again: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HELPERS / "signalled_search.py"), str(run_dir), name,
                           *again], capture_output=True, text=True, timeout=300)


def _stop_line(name: str, steps: int, run_dir: Path) -> str:
    return (f"{name}: search stopped after step {steps} and saved {run_dir / 'checkpoints' / 'last.ckpt'}; "
            f"resume with: python -m oneshot.train resume={run_dir}")


@pytest.mark.parametrize("name", ["SIGTERM", "SIGUSR1", "SIGINT"])
def test_signal_saves_at_the_next_step_and_resumes_exactly(uninterrupted: Path, tmp_path: Path,
                                                            name: str) -> None:
    run_dir = tmp_path / "run"
    proc = _signalled(run_dir, name)  # the signal arrives after step 6 (epoch 1, its second batch)
    assert proc.returncode == STOPPED_EXIT_CODE == 75, proc.stderr[-2000:]
    assert proc.stderr.splitlines()[-1] == _stop_line(name, 7, run_dir)
    checkpoint = load_checkpoint_file(run_dir / "checkpoints" / "last.ckpt")
    assert checkpoint["epoch"] == 1
    assert checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["ready"] == 7
    assert "Traceback" not in proc.stderr
    train(compose_search(f"resume={run_dir}"))
    assert_same_search(run_dir, uninterrupted)


def test_second_signal_while_saving_leaves_a_valid_checkpoint(uninterrupted: Path,
                                                              tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _signalled(run_dir, "SIGTERM", "again")  # SIGTERM again in the middle of the save
    assert proc.returncode == STOPPED_EXIT_CODE, proc.stderr[-2000:]
    assert proc.stderr.splitlines()[-1] == _stop_line("SIGTERM", 7, run_dir)
    assert os.listdir(run_dir / "checkpoints") == ["last.ckpt"]  # no temporary file left
    train(compose_search(f"resume={run_dir}"))
    assert_same_search(run_dir, uninterrupted)


@pytest.mark.parametrize("ddp", [(), ("trainer.strategy=ddp", "trainer.devices=2", "task.num_train=128")],
                         ids=["one process", "two processes"])
def test_command_line_search_stops_on_sigterm(tmp_path: Path, ddp: tuple[str, ...]) -> None:
    run_dir = tmp_path / "run"
    args = [*TINY_SEARCH, *ddp, "trainer.max_epochs=50", "checkpoint.every_n_steps=1",
            f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen([sys.executable, "-m", "oneshot.train", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not checkpoint.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == STOPPED_EXIT_CODE, err[-2000:]
    line = err.splitlines()[-1]
    assert line.startswith("SIGTERM: search stopped after step ") and line.endswith(
        f"; resume with: python -m oneshot.train resume={run_dir}")
    assert err.count("search stopped") == 1  # said once, by the first process
    saved = load_checkpoint_file(checkpoint)
    assert saved["epoch"] < 50 and (run_dir / "config.yaml").is_file()


@pytest.mark.parametrize("override, message", [
    ("checkpoint.every_n_steps=0", "checkpoint.every_n_steps must be a positive integer or null, got 0"),
    ("checkpoint.every_minutes=0", "checkpoint.every_minutes must be a positive number or null, got 0"),
    ("checkpoint.every_minutes=soon",
     "checkpoint.every_minutes must be a positive number or null, got 'soon'")])
def test_checkpoint_options_are_checked(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_config(compose_search(override))
    assert str(err.value) == message


def _loader(batches: int = 5):
    images = torch.arange(batches * 2).float()
    return make_loader(images, torch.zeros(len(images)), batch_size=2, shuffle=True, seed=3,
                       drop_last=True)


def test_loader_continues_after_the_saved_batch() -> None:
    whole = [indices.tolist() for indices, _ in _loader()]
    loader = _loader()
    read = iter(loader)
    first = [next(read)[0].tolist() for _ in range(2)]
    state = loader.state_dict()
    assert state == {"epoch": 0, "batches": 2} and first == whole[:2]
    resumed = _loader()
    resumed.load_state_dict(state)
    assert [x.tolist() for x, _ in resumed] == whole[2:]
    assert [x.tolist() for x, _ in resumed] == whole  # the next pass starts from the first batch


def test_loader_refuses_a_position_past_its_end() -> None:
    with pytest.raises(TaskError, match=r"^the saved loader position, batch 6, is outside this "
                                        r"loader's 5 batches; resume with the data the run was "
                                        r"started with$"):
        _loader().load_state_dict({"epoch": 0, "batches": 6})


@pytest.mark.parametrize("processed, finished", [(2, 2), (3, 3)])
def test_finished_epochs_of_a_checkpoint(processed: int, finished: int) -> None:
    # written inside epoch 2 (2 epochs processed) or at its end (3): not epoch + 1 for both
    progress = {"total": {"ready": 3, "completed": 2, "started": 3, "processed": processed}}
    checkpoint = {"epoch": 2, "loops": {"fit_loop": {"epoch_progress": progress}}}
    assert finished_epochs(checkpoint) == finished
    assert finished_epochs({"epoch": 2}) == 3  # a checkpoint without loop state: the epoch's end


def test_search_in_another_thread_keeps_the_handlers(tmp_path: Path) -> None:
    # signal handlers can only be set from the main thread (a launcher may run a job in another)
    callback = StepCheckpoint(tmp_path / "last.ckpt", run_dir=tmp_path)
    trainer = SimpleNamespace(strategy=SimpleNamespace(launcher=None))
    errors: list[BaseException] = []

    def start() -> None:
        try:
            callback.on_train_start(trainer, None)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    worker = threading.Thread(target=start)
    worker.start()
    worker.join()
    assert errors == [] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_processes_on_an_accelerator_agree_only_every_sync_every_steps() -> None:
    from oneshot.search.signals import SYNC_EVERY, StepCheckpoint

    callback = StepCheckpoint(Path("last.ckpt"), run_dir=Path("."), every_minutes=1e-9)
    callback.received = signal.SIGTERM
    gpu = SimpleNamespace(world_size=2, strategy=SimpleNamespace(root_device=torch.device("cuda")))
    # no collective (and no host synchronisation) between the agreed steps
    assert callback._agreed(gpu, SYNC_EVERY + 1) == (False, False)
    alone = SimpleNamespace(world_size=1, strategy=None)
    assert callback._agreed(alone, 3) == (True, True)  # one process: its own flags, no exchange
