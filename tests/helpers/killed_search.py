"""Run a tiny search that SIGKILLs itself in the middle of an epoch.

Usage: python killed_search.py RUN_DIR KILL_EPOCH [extra overrides...]. The process dies at the
second batch of epoch KILL_EPOCH, leaving the run dir as a crash would.
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
    """SIGKILL this process after the second batch of ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: object,
                           batch: object, batch_idx: int) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGKILL)


def main(run_dir: Path, kill_epoch: int, overrides: list[str]) -> None:
    torch.set_num_threads(1)
    build = train_module.build_trainer
    train_module.build_trainer = lambda cfg, rd, callbacks: build(cfg, rd, [*callbacks, KillMidEpoch(kill_epoch)])
    with initialize_config_module("oneshot.conf.search", version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, f"run_dir={run_dir}", *overrides])
    train_module.train(cfg)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
