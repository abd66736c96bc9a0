"""What every benchmark script shares: the step timer, the device name and peak memory, the summary."""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from typing import Sequence

import pytorch_lightning as pl
import torch

from oneshot.training.datamodules import SearchDataModule
from tasks import load_task


class StepTimer(pl.Callback):
    """Wall-clock seconds of every training step, synchronising queued device work first."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def _sync(self, module: pl.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             *args: object) -> None:
        self._sync(pl_module)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           *args: object) -> None:
        self._sync(pl_module)
        self.seconds.append(time.perf_counter() - self._start)


def search_data(batch: int, steps: int, *, channels_last: bool,
                image_size: int = 32) -> SearchDataModule:
    """Seeded synthetic 10-class images for ``steps`` search steps of ``batch`` images per half."""
    dataset = load_task("synthetic", num_train=2 * batch * steps, num_test=batch,
                        image_size=image_size, num_classes=10)
    return SearchDataModule(dataset, batch_size=batch, seed=0, channels_last=channels_last)


def step_trainer(accelerator: str, precision: str, steps: int, timer: pl.Callback,
                 **extra: object) -> pl.Trainer:
    """A one-epoch Trainer of ``steps`` training steps, no validation, logging or checkpoints."""
    return pl.Trainer(accelerator=accelerator, devices=1, precision=precision, max_epochs=1,
                      limit_train_batches=steps, limit_val_batches=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[timer],
                      use_distributed_sampler=False, **extra)


def device_and_peak(device: torch.device) -> tuple[str, float, str]:
    """The device name, the peak memory in GiB, and what was measured (``allocated`` or ``RSS``)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device), torch.cuda.max_memory_allocated(device) / 2**30, "allocated"
    return "cpu", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "RSS"


def timing(seconds: Sequence[float], digits: int = 2) -> str:
    """``s/step over N steps: median .. min .. max ..``."""
    return (f"s/step over {len(seconds)} steps: median {statistics.median(seconds):.{digits}f}  "
            f"min {min(seconds):.{digits}f}  max {max(seconds):.{digits}f}")


def add_protocol_args(parser: argparse.ArgumentParser, *, precision: bool = True) -> None:
    """The protocol's options: warm-up and timed steps, the accelerator and the precision."""
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="auto", help="Lightning accelerator: auto, cpu, gpu")
    if precision:
        parser.add_argument("--precision", default="32-true", help="e.g. 32-true, bf16-mixed")
