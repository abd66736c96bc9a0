"""Peak memory and seconds per search step of PC-DARTS against DARTS (first order), same run.

Protocol (../shared/BENCHMARKS.md, as benchmarks/search_step.py): one child process per
algorithm, so each peak is its own; warm-up steps then timed steps (architecture step plus
weight step) through the real Lightning training loop. pcdarts runs without its warm-up epochs,
so both algorithms do the same two steps. On a CPU the peak is the resident set (``ru_maxrss``),
reported in total and above the resident set just before training (model and data built); on
a GPU it is the peak allocated memory.

    python benchmarks/pcdarts_memory.py                      # batch 64, 16 channels, 8 cells
    python benchmarks/pcdarts_memory.py --warmup 1 --steps 2 --space nb201
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys

import pytorch_lightning as pl
import torch

from common import StepTimer, step_trainer, add_protocol_args, device_and_peak, search_data, timing
from oneshot.search.algorithms import algorithm_space_options, create_algorithm
from supernets.spaces import create_supernet, get_space

ALGORITHMS = ("darts", "pcdarts")


def run(args: argparse.Namespace) -> None:
    steps = args.warmup + args.steps
    pl.seed_everything(0, verbose=False)
    datamodule = search_data(args.batch, steps, channels_last=args.channels_last)
    cfg = {"warmup_epochs": 0} if args.algorithm == "pcdarts" else {}
    extra = algorithm_space_options(args.algorithm, get_space(args.space).supernet, cfg)
    supernet = create_supernet(args.space, num_classes=10, channels=args.channels,
                               layers=args.layers, **extra)
    if args.channels_last:
        supernet = supernet.to(memory_format=torch.channels_last)
    module = create_algorithm(args.algorithm, supernet, num_classes=10, cfg=cfg)
    timer = StepTimer()
    trainer = step_trainer(args.device, args.precision, steps, timer)
    before_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    trainer.fit(module, datamodule=datamodule)
    name, peak_gib, measured = device_and_peak(trainer.strategy.root_device)
    above = f" ({peak_gib - before_gib:.3f} GiB above the {before_gib:.3f} before training)" \
        if measured == "RSS" else ""
    print(f"{args.algorithm} | space {args.space} | batch {args.batch} | channels {args.channels} | "
          f"cells {args.layers} | {extra or 'all channels'} | precision {args.precision} | "
          f"channels_last {args.channels_last} | torch {torch.__version__} | device {name} | "
          f"threads {torch.get_num_threads()}")
    print(f"  {timing(timer.seconds[args.warmup:])} | peak memory {peak_gib:.3f} GiB "
          f"{measured}{above}", flush=True)


def compare(args: argparse.Namespace) -> None:
    """Each algorithm in its own process, then the pcdarts / darts ratios."""
    results = {}
    for algorithm in ALGORITHMS:
        argv = [sys.executable, __file__, "--algorithm", algorithm, *sys.argv[1:]]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        print(out, end="", flush=True)
        median = float(re.search(r"median ([\d.]+)", out).group(1))
        peak = float(re.search(r"peak memory ([\d.]+) GiB", out).group(1))
        above = re.search(r"\(([\d.]+) GiB above", out)
        results[algorithm] = (median, peak, float(above.group(1)) if above else None)
    (d_step, d_peak, d_above), (p_step, p_peak, p_above) = results["darts"], results["pcdarts"]
    line = f"pcdarts / darts: step time {p_step / d_step:.2f}x, peak memory {p_peak / d_peak:.2f}x"
    if d_above and p_above is not None:
        line += f", memory above the pre-training resident set {p_above / d_above:.2f}x"
    print(line)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", choices=ALGORITHMS, default=None,
                        help="run one algorithm in this process (default: both, compared)")
    parser.add_argument("--space", choices=("darts", "nb201"), default="darts")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8,
                        help="darts: cells (8); nb201: cells per stage")
    add_protocol_args(parser)
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="NHWC images and weights, as data.channels_last (default: on)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.algorithm is None:
        compare(args)
    else:
        run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
