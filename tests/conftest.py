"""Test-suite settings: tiny tensors run fastest, and steadiest on a shared machine, on one thread.

Also the one small search run that several test modules inspect (``search_run``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the subprocesses tests start
torch.set_num_threads(1)

TINY_SEARCH = (
    "task=synthetic", "task.num_train=64", "task.num_test=32", "task.image_size=8",
    "space.channels=4", "space.layers=3", "data.batch_size=8", "data.eval_batch_size=16",
    "trainer.max_epochs=2", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
)


def compose_search(*overrides: str, base: Sequence[str] = TINY_SEARCH) -> Any:
    """The ``oneshot.train`` config with the tiny search settings plus ``overrides``."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("oneshot.conf.search", version_base="1.3"):
        return compose("train", overrides=[*base, *overrides])


@pytest.fixture(scope="session")
def search_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 2-epoch first-order search on tiny synthetic data; its outputs are only read by tests."""
    import pytorch_lightning as pl

    import oneshot.train as train_module

    class CheckpointProbe(pl.Callback):
        """Records, at the start of each epoch, which files the checkpoint dir holds."""

        def __init__(self) -> None:
            self.seen: dict[int, list[str]] = {}

        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            folder = run_dir / "checkpoints"
            self.seen[trainer.current_epoch] = sorted(os.listdir(folder)) if folder.is_dir() else []

    run_dir = tmp_path_factory.mktemp("search") / "run"
    probe = CheckpointProbe()
    original = train_module.build_trainer

    def build_with_probe(cfg: Any, directory: Path, callbacks: list[pl.Callback]) -> pl.Trainer:
        return original(cfg, directory, [*callbacks, probe])

    cfg = compose_search(f"run_dir={run_dir}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "build_trainer", build_with_probe)
        result = train_module.train(cfg)
    return {"run_dir": run_dir, "result": result, "checkpoints_seen": probe.seen}
