"""Run a tiny search that SIGKILLs itself in the middle of an epoch.

Usage: python killed_search.py RUN_DIR KILL_EPOCH[:KILL_BATCH] [extra overrides...]. The process
dies after batch KILL_BATCH (0-based, default 1) of epoch KILL_EPOCH, leaving the run dir as a
crash would (with checkpoint.every_n_steps=1 its last checkpoint is of that very batch).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_module

import oneshot.train as train_module

TINY = ["task=synthetic", "task.num_train=64", "task.num_test=32", "task.image_size=8",
        "space.channels=4", "space.layers=3", "data.batch_size=8", "data.eval_batch_size=16",
        "trainer.max_epochs=3", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]


class KillMidEpoch(pl.Callback):
    """SIGKILL this process after batch ``batch`` of ``epoch``."""

    def __init__(self, epoch: int, batch: int = 1) -> None:
        self.epoch = epoch
        self.batch = batch

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: object,
                           batch: object, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


def main(run_dir: Path, kill_at: str, overrides: list[str]) -> None:
    torch.set_num_threads(1)
    epoch, _, batch = kill_at.partition(":")
    kill = KillMidEpoch(int(epoch), int(batch or 1))
    build = train_module.build_trainer
    train_module.build_trainer = lambda cfg, rd, callbacks: build(cfg, rd, [*callbacks, kill])
    with initialize_config_module("oneshot.conf.search", version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, f"run_dir={run_dir}", *overrides])
    train_module.train(cfg)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3:])
