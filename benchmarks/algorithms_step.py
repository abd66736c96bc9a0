"""Seconds per search step of GDAS, SNAS and SPOS on the nb201 and darts spaces, and peak memory.

Protocol (../shared/BENCHMARKS.md, as benchmarks/search_step.py): one process per configuration,
torch's default threads, 3 warm-up steps then 20 timed steps through the real Lightning training
loop; prints the median, min and max seconds per step and the peak resident memory (CPU) or peak
allocated memory (GPU). A GDAS or SNAS step is the architecture step plus the weight step; a
SPOS step is one weight step (its search after training is not timed here).

    python benchmarks/algorithms_step.py --algorithm gdas --space nb201     # C=16, N=5, batch 64
    python benchmarks/algorithms_step.py --algorithm snas --space darts --batch 32 --layers 5
    python benchmarks/algorithms_step.py --all         # every algorithm x space, small config
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import warnings

import pytorch_lightning as pl
import torch

from common import StepTimer, step_trainer, add_protocol_args, device_and_peak, search_data, timing
from oneshot.search.algorithms import create_algorithm
from supernets.spaces import create_supernet

ALGORITHMS = ("gdas", "snas", "spos")
SPACES = ("nb201", "darts")
DEFAULT_SIZE = {"nb201": (16, 5), "darts": (16, 8)}  # (channels, layers) of the papers' searches
SMALL = (32, 8, 5)  # batch, channels, layers of --all


def run(args: argparse.Namespace) -> None:
    channels = args.channels or DEFAULT_SIZE[args.space][0]
    layers = args.layers or DEFAULT_SIZE[args.space][1]
    steps = args.warmup + args.steps
    pl.seed_everything(0, verbose=False)
    datamodule = search_data(args.batch, steps, channels_last=args.channels_last)
    supernet = create_supernet(args.space, num_classes=10, channels=channels, layers=layers)
    if args.channels_last:
        supernet = supernet.to(memory_format=torch.channels_last)
    module = create_algorithm(args.algorithm, supernet, num_classes=10, cfg={})
    timer = StepTimer()
    trainer = step_trainer(args.device, args.precision, steps, timer)
    with warnings.catch_warnings():  # only training is timed: SPOS's search does not run
        warnings.filterwarnings("ignore", message="SPOS searches in the last epoch")
        trainer.fit(module, datamodule=datamodule)
    timed = timer.seconds[args.warmup:]
    name, peak_gib, measured = device_and_peak(trainer.strategy.root_device)
    peak = f"{peak_gib:.2f} GiB {measured}"
    print(f"{args.algorithm} | space {args.space} | batch {args.batch} | channels {channels} | "
          f"layers {layers} | precision {args.precision} | channels_last {args.channels_last} | "
          f"torch {torch.__version__} | "
          f"device {name} | threads {torch.get_num_threads()}")
    print(f"  {timing(timed, digits=3)} | peak memory {peak}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="gdas")
    parser.add_argument("--space", choices=SPACES, default="nb201")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=None,
                        help="initial channels (default: nb201 16, darts 16)")
    parser.add_argument("--layers", type=int, default=None,
                        help="nb201: cells per stage (5); darts: cells (8)")
    add_protocol_args(parser)
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="NHWC images and weights, as data.channels_last (default: on)")
    parser.add_argument("--all", action="store_true",
                        help="every algorithm on every space at a small config (batch 32, "
                             "8 channels, 5 layers), each in its own process")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if not args.all:
        run(args)
        return
    batch, channels, layers = (str(value) for value in SMALL)
    for space in SPACES:
        for algorithm in ALGORITHMS:
            subprocess.run([sys.executable, __file__, "--algorithm", algorithm, "--space", space,
                            "--batch", batch, "--channels", channels, "--layers", layers,
                            "--warmup", str(args.warmup), "--steps", str(args.steps),
                            "--device", args.device, "--precision", args.precision,
                            "--channels-last" if args.channels_last else "--no-channels-last"],
                           check=True)


if __name__ == "__main__":
    main(sys.argv[1:])
