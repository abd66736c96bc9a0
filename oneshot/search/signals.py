"""Checkpoints inside an epoch: every N steps, every M minutes, and on a stop signal.

:class:`StepCheckpoint` writes ``checkpoints/last.ckpt`` at a step boundary (after a training
batch, its updates done), where Lightning's loop state and the resumable loaders record the
position, so a resume continues at the next batch. SIGTERM, SIGUSR1 and SIGINT ask for a stop:
the search finishes its step, saves, prints one line saying how to resume, and exits with
:data:`STOPPED_EXIT_CODE`. Further signals while it stops are only noted, so they cannot
interrupt the save (which also writes a temporary file and renames it).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
import torch

STOPPED_EXIT_CODE = 75
"""The exit code of a search stopped by a signal after saving: ``EX_TEMPFAIL`` of sysexits.h,
"try again later", distinct from 0 (finished), 1 (crashed) and 2 (bad input)."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
SYNC_EVERY = 50
"""On an accelerator, processes agree on a stop (or a timed save) every this many steps."""


class SearchStopped(SystemExit):
    """Raised at a step boundary once the checkpoint is saved; exits with STOPPED_EXIT_CODE."""

    def __init__(self) -> None:
        super().__init__(STOPPED_EXIT_CODE)


class StepCheckpoint(pl.Callback):
    """Save ``path`` every ``every_n_steps`` training steps (batches) and/or every
    ``every_minutes`` minutes, and at the first step boundary after a stop signal.

    The last batch of an epoch is no such boundary: its checkpoint would skip the epoch's end
    (validation, genotype, learning-rate step) on resume, so the epoch-end checkpoint follows
    instead, and a stop waits for the next epoch's first step (a search that ends there
    simply finishes). The handlers replace Lightning's from the first step to the last:
    Lightning's own SIGTERM stop saves nothing and exits with 0.
    """

    def __init__(self, path: Path, *, run_dir: Path, every_n_steps: int | None = None,
                 every_minutes: float | None = None) -> None:
        self.path = path
        self.run_dir = run_dir
        self.every_n_steps = every_n_steps
        self.every_seconds = None if every_minutes is None else 60.0 * every_minutes
        self.received: int | None = None
        self._forward: Any = None
        self._last_save = time.monotonic()
        self._previous: dict[int, Any] = {}

    def _note(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler: remember the first stop signal (passing it to the processes
        Lightning launched); the search acts on it at the step boundary."""
        if self.received is None:
            self.received = signum
            if self._forward is not None:
                self._forward.kill(signum)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the clock of ``every_minutes`` and take over the stop signals."""
        self.received = None
        self._forward = trainer.strategy.launcher
        self._last_save = time.monotonic()
        if threading.current_thread() is threading.main_thread():  # only it can set handlers
            self._previous = {signum: signal.signal(signum, self._note) for signum in STOP_SIGNALS}

    def _restore_handlers(self) -> None:
        """Give the stop signals back to the handlers they had before the first step."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The last step is done: the signals go back (before Lightning restores its own)."""
        self._restore_handlers()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        """The search failed or stopped: the signals go back."""
        self._restore_handlers()

    def _agreed(self, trainer: pl.Trainer, steps: int) -> tuple[bool, bool]:
        """``(stop, minutes_due)`` as every process sees them: a stop signal received by any
        process, ``every_minutes`` elapsed on any. Several processes exchange the two flags in
        one collective, every step on the CPU and every :data:`SYNC_EVERY` steps on an
        accelerator (no per-step host synchronisation); one process exchanges nothing."""
        stop = self.received is not None
        timed = self.every_seconds is not None and \
            time.monotonic() - self._last_save >= self.every_seconds
        if trainer.world_size == 1:
            return stop, timed
        device = trainer.strategy.root_device
        if device.type != "cpu" and steps % SYNC_EVERY:
            return False, False
        flags = torch.tensor([float(stop), float(timed)], device=device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        stop, timed = (bool(flag) for flag in flags.tolist())
        return stop, timed

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        """Save when due or asked to stop (not at an epoch's last step); then stop if asked."""
        progress = trainer.fit_loop.epoch_loop.batch_progress
        if progress.current.ready >= trainer.num_training_batches:
            return
        steps = progress.total.ready
        stop, timed = self._agreed(trainer, steps)
        counted = self.every_n_steps is not None and steps % self.every_n_steps == 0
        if stop or timed or counted:
            trainer.save_checkpoint(self.path)
            self._last_save = time.monotonic()
        if stop:
            self._restore_handlers()
            if trainer.is_global_zero:
                print(f"{self._signal_name()}: search stopped after step {steps} and "
                      f"saved {self.path}; resume with: python -m oneshot.train resume={self.run_dir}",
                      file=sys.stderr, flush=True)
            raise SearchStopped()

    def _signal_name(self) -> str:
        """The name of the signal received here, e.g. ``SIGTERM``."""
        return signal.Signals(self.received).name if self.received is not None else "a signal"
