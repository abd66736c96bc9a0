"""Run a tiny search that sends itself a signal in the middle of epoch 1.

Usage: python signalled_search.py RUN_DIR SIGNAL [again] [extra overrides...]. SIGNAL (e.g.
SIGTERM) arrives after batch 1 of epoch 1; with ``again`` the same signal arrives a second time
while the checkpoint it asks for is being written.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_module

import oneshot.storage.checkpointing as checkpointing
import oneshot.train as train_module
from killed_search import TINY


class SignalMidEpoch(pl.Callback):
    """Send ``signum`` to this process after batch 1 of epoch 1."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.sent = False

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: object,
                           batch: object, batch_idx: int) -> None:
        if trainer.current_epoch == 1 and batch_idx == 1:
            os.kill(os.getpid(), self.signum)
            self.sent = True


def signal_while_saving(sender: SignalMidEpoch) -> None:
    """Make a checkpoint save after the first signal receive it again, between serializing the
    checkpoint and writing the file."""
    save = checkpointing.write_atomic

    def interrupted(path: Any, data: bytes) -> None:
        if sender.sent:
            os.kill(os.getpid(), sender.signum)
        save(path, data)

    checkpointing.write_atomic = interrupted


def main(run_dir: Path, signum: int, again: bool, overrides: list[str]) -> None:
    torch.set_num_threads(1)
    build = train_module.build_trainer
    sender = SignalMidEpoch(signum)
    train_module.build_trainer = lambda cfg, rd, callbacks: build(cfg, rd, [*callbacks, sender])
    if again:
        signal_while_saving(sender)
    with initialize_config_module("oneshot.conf.search", version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, f"run_dir={run_dir}", *overrides])
    train_module.train(cfg)


if __name__ == "__main__":
    again = sys.argv[3:4] == ["again"]
    main(Path(sys.argv[1]), signal.Signals[sys.argv[2]], again, sys.argv[3 + again:])
