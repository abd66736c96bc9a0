"""Run a tiny search with DDP on 2 CPU processes, recording every rank's alphas after each step.

Usage: python ddp_search.py RUN_DIR [extra overrides...]. Lightning starts the second process by
running this script again; each rank writes ``RUN_DIR/rank<r>.pt`` with its alphas per step, its
final supernet weights and the genotype it derives; the result is printed as ``oneshot.train``
prints it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_module

import oneshot.train as train_module

TINY = ["task=synthetic", "task.num_train=64", "task.num_test=32", "task.image_size=8",
        "space.channels=4", "space.layers=3", "data.batch_size=8", "data.eval_batch_size=16",
        "trainer.max_epochs=2", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
        "trainer.strategy=ddp", "trainer.devices=2"]


class RankRecorder(pl.Callback):
    """Keeps this rank's alphas after every training step; saves them when the search ends."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.alphas: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        self.alphas.append(torch.cat([a.detach().flatten() for a in pl_module.arch.parameters_list()]))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.save({"alphas": torch.stack(self.alphas),
                    "weights": {k: v.detach().clone() for k, v in pl_module.supernet.state_dict().items()},
                    "genotype": pl_module.genotype().to_dict()},
                   self.out_dir / f"rank{trainer.global_rank}.pt")


def main(run_dir: Path, overrides: list[str]) -> None:
    torch.set_num_threads(1)
    recorder = RankRecorder(run_dir)
    build = train_module.build_trainer
    train_module.build_trainer = lambda cfg, rd, callbacks: build(cfg, rd, [*callbacks, recorder])
    with initialize_config_module("oneshot.conf.search", version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, f"run_dir={run_dir}", *overrides])
    train_module.print_result(train_module.train(cfg))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
