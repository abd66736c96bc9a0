"""Seconds per search step outside the step's maths: the data pipeline and the Lightning loop.

The real loop (``common.step_trainer``) over the search data (a weight half and an alpha half
of ``--batch`` images each, taken from memory, moved to the device, randomly cropped and flipped
there, in the search's memory format) with a LightningModule whose training step does nothing.
What it measures is what every search step pays before its maths starts. With
``--step-seconds S`` (a ``search_step.py`` median of the same configuration, which times the
step's maths only) it prints its share of a whole step, ``pipeline / (pipeline + S)``.

    python benchmarks/data_pipeline.py                           # batch 64, 200 steps
    python benchmarks/data_pipeline.py --batch 32 --step-seconds 1.30
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import pytorch_lightning as pl
import torch

from common import add_protocol_args, search_data, step_trainer, timing


class CycleTimer(pl.Callback):
    """Wall-clock seconds from one training step's end to the next one's: fetching, moving and
    augmenting the batch included (``StepTimer`` starts after them)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._last: float | None = None

    def on_train_batch_end(self, *args: object) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.seconds.append(now - self._last)
        self._last = now


class DataOnly(pl.LightningModule):
    """A search module whose training step only touches its batch."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # Lightning needs one parameter

    def training_step(self, batch: Any, batch_idx: int) -> None:
        assert set(batch) == {"train", "val"}  # the two augmented halves arrived

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.anchor], lr=0.0)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--step-seconds", type=float, default=None,
                        help="a search step's seconds at this batch size, to print the share")
    add_protocol_args(parser, precision=False)
    parser.set_defaults(warmup=10, steps=200)
    args = parser.parse_args(argv)
    steps = args.warmup + args.steps
    timer = CycleTimer()
    trainer = step_trainer(args.device, "32-true", steps, timer)
    trainer.fit(DataOnly(), datamodule=search_data(args.batch, steps, channels_last=True))
    timed = timer.seconds[args.warmup - 1:]
    print(f"data pipeline + loop | batch {args.batch} per half | threads {torch.get_num_threads()}")
    print(f"  {timing(timed, digits=4)}", end="")
    if args.step_seconds:
        pipeline = statistics.median(timed)
        print(f" | {100 * pipeline / (pipeline + args.step_seconds):.2f}% of a step with "
              f"{args.step_seconds:.2f} s of maths", end="")
    print()


if __name__ == "__main__":
    main(sys.argv[1:])
