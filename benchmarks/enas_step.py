"""Seconds per ENAS shared-weight step and per controller step, and peak memory.

Protocol (as benchmarks/search_step.py): one process per configuration, torch's default threads,
NHWC images and weights by default (as the search), one epoch through the real Lightning training
loop with ``warmup + steps`` shared-weight steps followed by a controller phase of
``warmup + steps`` controller steps; the first ``warmup`` of each kind are dropped. A
shared-weight step samples an architecture and trains it on one batch; a controller step samples
an architecture, scores it on one batch of the architecture half and updates the controller.
Prints the median, min and max seconds per step of each kind and the peak resident memory (CPU)
or peak allocated memory (GPU).

    python benchmarks/enas_step.py                       # DARTS space, paper search network
    python benchmarks/enas_step.py --batch 32 --channels 8 --layers 5
    python benchmarks/enas_step.py --all                 # both reference configurations
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import time
import warnings
from typing import Any, Callable

import pytorch_lightning as pl
import torch

from common import StepTimer, step_trainer, add_protocol_args, device_and_peak, search_data, timing
from oneshot.search.algorithms import create_algorithm
from supernets.spaces import create_supernet

REFERENCE_CONFIGS = (("64", "16", "8"), ("32", "8", "5"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[..., Any], module: pl.LightningModule,
           record: list[float]) -> Callable[..., Any]:
    """``fn`` recording its wall-clock seconds (after the module's device work) in ``record``."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _sync(module.device)
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        _sync(module.device)
        record.append(time.perf_counter() - start)
        return out
    return wrapper


def _summary(name: str, seconds: list[float]) -> str:
    return f"  {name} {timing(seconds, digits=3)}"


def run(args: argparse.Namespace) -> None:
    steps = args.warmup + args.steps
    pl.seed_everything(0, verbose=False)
    datamodule = search_data(args.batch, steps, channels_last=args.channels_last)
    supernet = create_supernet("darts", num_classes=10, channels=args.channels,
                               layers=args.layers)
    if args.channels_last:
        supernet = supernet.to(memory_format=torch.channels_last)
    module = create_algorithm("enas", supernet, num_classes=10,
                              cfg={"controller_steps": steps})
    controller_seconds: list[float] = []
    phase_seconds: list[float] = []
    module.controller_step = _timed(module.controller_step, module, controller_seconds)
    module.controller_phase = _timed(module.controller_phase, module, phase_seconds)
    timer = StepTimer()
    trainer = step_trainer(args.device, args.precision, steps, timer)
    with warnings.catch_warnings():  # only training is timed: the derive step does not run
        warnings.filterwarnings("ignore", message="ENAS derives its genotype")
        trainer.fit(module, datamodule=datamodule)
    weight_seconds = timer.seconds[:-1] + [timer.seconds[-1] - phase_seconds[0]]
    name, peak_gib, measured = device_and_peak(trainer.strategy.root_device)
    peak = f"{peak_gib:.2f} GiB {measured}"
    print(f"enas | space darts | batch {args.batch} | channels {args.channels} | "
          f"cells {args.layers} | precision {args.precision} | "
          f"channels_last {args.channels_last} | torch {torch.__version__} | "
          f"device {name} | threads {torch.get_num_threads()}")
    print(_summary("shared-weight", weight_seconds[args.warmup:]))
    print(_summary("controller", controller_seconds[args.warmup:]))
    print(f"  peak memory {peak}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    add_protocol_args(parser)
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="NHWC images and weights, as data.channels_last (default: on)")
    parser.add_argument("--all", action="store_true",
                        help="run the reference configurations, each in its own process")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if not args.all:
        run(args)
        return
    for batch, channels, layers in REFERENCE_CONFIGS:
        subprocess.run([sys.executable, __file__, "--batch", batch, "--channels", channels,
                        "--layers", layers, "--warmup", str(args.warmup),
                        "--steps", str(args.steps), "--device", args.device,
                        "--precision", args.precision,
                        "--channels-last" if args.channels_last else "--no-channels-last"],
                       check=True)


if __name__ == "__main__":
    main(sys.argv[1:])
