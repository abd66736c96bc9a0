"""Seconds per DARTS search step (architecture step + weight step) and peak memory.

Protocol (../shared/BENCHMARKS.md): one process per configuration, torch's default threads,
3 warm-up steps then 20 timed steps through the real Lightning training loop; prints the median,
min and max seconds per step and the peak resident memory (CPU) or peak allocated memory (GPU).

    python benchmarks/search_step.py                       # paper config, first order
    python benchmarks/search_step.py --order second
    python benchmarks/search_step.py --batch 32 --channels 8 --layers 5
    python benchmarks/search_step.py --all                 # the four reference configurations
    python benchmarks/search_step.py --recompute edge      # space.recompute (none, weighted, edge, cell)
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytorch_lightning as pl
import torch

from common import StepTimer, step_trainer, add_protocol_args, device_and_peak, search_data, timing
from oneshot.search.algorithms import create_algorithm
from supernets.recompute import RECOMPUTE_MODES
from supernets.spaces import create_supernet

REFERENCE_CONFIGS = (
    ("64", "16", "8", "first"), ("64", "16", "8", "second"),
    ("32", "8", "5", "first"), ("32", "8", "5", "second"),
)


def run(args: argparse.Namespace) -> None:
    steps = args.warmup + args.steps
    pl.seed_everything(0, verbose=False)
    datamodule = search_data(args.batch, steps, channels_last=args.channels_last)
    supernet = create_supernet("darts", num_classes=10, channels=args.channels, layers=args.layers,
                               recompute=args.recompute)
    if args.channels_last:
        supernet = supernet.to(memory_format=torch.channels_last)
    module = create_algorithm("darts", supernet, num_classes=10,
                              cfg={"unrolled": args.order == "second"})
    timer = StepTimer()
    trainer = step_trainer(args.device, args.precision, steps, timer)
    trainer.fit(module, datamodule=datamodule)
    timed = timer.seconds[args.warmup:]
    name, peak_gib, measured = device_and_peak(trainer.strategy.root_device)
    peak = f"{peak_gib:.2f} GiB {measured}"
    print(f"darts {args.order}-order | space darts | batch {args.batch} | channels {args.channels} | "
          f"cells {args.layers} | recompute {args.recompute} | precision {args.precision} | channels_last {args.channels_last} | torch {torch.__version__} | device {name} | "
          f"threads {torch.get_num_threads()}")
    print(f"  {timing(timed)} | peak memory {peak}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--order", choices=("first", "second"), default="first")
    parser.add_argument("--recompute", choices=RECOMPUTE_MODES, default="none",
                        help="space.recompute: store every activation, or recompute each edge's "
                             "candidates with weights, each edge's or each cell's in backward")
    add_protocol_args(parser)
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="NHWC memory format (the search default)")
    parser.add_argument("--all", action="store_true", help="run the four reference configurations, "
                                                             "each in its own process")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if not args.all:
        run(args)
        return
    for batch, channels, layers, order in REFERENCE_CONFIGS:
        subprocess.run([sys.executable, __file__, "--batch", batch, "--channels", channels,
                        "--layers", layers, "--order", order, "--warmup", str(args.warmup),
                        "--steps", str(args.steps), "--device", args.device,
                        "--precision", args.precision, "--recompute", args.recompute,
                        "--channels-last" if args.channels_last else "--no-channels-last"], check=True)


if __name__ == "__main__":
    main(sys.argv[1:])
