"""Run tiny searches with DDP on 2 CPU processes, recording every rank's architecture state.

Usage: python ddp_search.py OUT_DIR RUNS_JSON, where RUNS_JSON maps a run name to its overrides
(on top of :data:`TINY`). Lightning starts the second process by running this script again with
the same arguments; both processes run the searches in the given order, in one process group.
Each rank writes ``OUT_DIR/<name>/rank<r>.pt``: after every training step its architecture state
(:func:`architecture_state`) and genotype text, every architecture the algorithm drew
(``sample``), its final supernet weights and the genotype it derives. Results are printed as
``oneshot.train`` prints them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_module

import oneshot.train as train_module

TINY = ["task=synthetic", "task.num_train=64", "task.num_test=32", "task.image_size=8",
        "data.batch_size=8", "data.eval_batch_size=16", "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false", "trainer.strategy=ddp", "trainer.devices=2"]


def architecture_state(module: pl.LightningModule) -> torch.Tensor:
    """What decides the architectures, flat: the alphas; the ENAS controller's parameters and
    baseline; empty for a search without architecture parameters (SPOS)."""
    if hasattr(module, "arch"):
        return torch.cat([a.detach().flatten() for a in module.arch.parameters_list()])
    if hasattr(module, "controller"):
        parts = [p.detach().flatten() for p in module.controller.parameters()]
        return torch.cat([*parts, module.baseline.detach().reshape(1)])
    return torch.zeros(0)


class RankRecorder(pl.Callback):
    """Keeps this rank's architecture state after every step; saves it when the search ends."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.states: list[torch.Tensor] = []
        self.genotypes: list[str] = []
        self.draws: list[dict[str, int]] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Record every architecture a sampling algorithm (ENAS, SPOS) draws."""
        if hasattr(pl_module, "sample") and not hasattr(pl_module, "arch"):
            pl_module.sample = self._recording(pl_module.sample)

    def _recording(self, sample: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*args: Any) -> Any:
            drawn = sample(*args)
            self.draws.append(dict(getattr(drawn, "choices", drawn)))
            return drawn
        return recorded

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        self.states.append(architecture_state(pl_module))
        self.genotypes.append(str(pl_module.genotype()))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.save({"states": torch.stack(self.states), "genotypes": self.genotypes,
                    "draws": self.draws,
                    "weights": {k: v.detach().clone() for k, v in pl_module.supernet.state_dict().items()},
                    "genotype": pl_module.genotype().to_dict()},
                   self.out_dir / f"rank{trainer.global_rank}.pt")


def search(run_dir: Path, overrides: list[str]) -> None:
    """One recorded search in ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    recorder = RankRecorder(run_dir)
    build = train_module.build_trainer
    train_module.build_trainer = lambda cfg, rd, callbacks: build(cfg, rd, [*callbacks, recorder])
    try:
        with initialize_config_module("oneshot.conf.search", version_base="1.3"):
            cfg = compose("train", overrides=[*TINY, f"run_dir={run_dir}", *overrides])
        train_module.print_result(train_module.train(cfg))
    finally:
        train_module.build_trainer = build


def main(out_dir: Path, runs: dict[str, list[str]]) -> None:
    torch.set_num_threads(1)
    for name, overrides in runs.items():
        search(out_dir / name, overrides)


if __name__ == "__main__":
    main(Path(sys.argv[1]), json.loads(sys.argv[2]))
