"""Seconds per search step and peak memory of ProxylessNAS against DARTS on the same space.

Protocol (../shared/BENCHMARKS.md): each algorithm in its own process, torch's default threads,
3 warm-up steps then 20 timed steps through the real Lightning training loop (a step is the
architecture step plus the weight step); peak resident memory (CPU) or peak allocated memory
(GPU). Defaults are the DARTS paper's search configuration on space=darts, with NHWC
(channels_last) images and weights like the search's default.

    python benchmarks/proxyless_vs_darts.py                     # both, then the ratios
    python benchmarks/proxyless_vs_darts.py --only proxyless    # one algorithm, this process
    python benchmarks/proxyless_vs_darts.py --space proxyless --batch 32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import pytorch_lightning as pl
import torch

from oneshot.search.algorithms import create_algorithm
from common import StepTimer, add_protocol_args, device_and_peak, search_data
from supernets.spaces import create_supernet

ALGORITHMS = ("darts", "proxyless")


def measure(args: argparse.Namespace) -> dict[str, object]:
    """Run ``args.only`` for warm-up + timed steps; returns the numbers of this process."""
    steps = args.warmup + args.steps
    pl.seed_everything(0, verbose=False)
    datamodule = search_data(args.batch, steps, channels_last=args.channels_last)
    options = {"channels": args.channels, "layers": args.layers} if args.space == "darts" else {}
    supernet = create_supernet(args.space, num_classes=10, **options)
    if args.channels_last:
        supernet = supernet.to(memory_format=torch.channels_last)
    module = create_algorithm(args.only, supernet, num_classes=10, cfg={})
    timer = StepTimer()
    trainer = pl.Trainer(accelerator=args.device, devices=1, max_epochs=1,
                         limit_train_batches=steps, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer],
                         use_distributed_sampler=False)
    trainer.fit(module, datamodule=datamodule)
    timed = timer.seconds[args.warmup:]
    name, peak_gib, measured = device_and_peak(trainer.strategy.root_device)
    return {"algorithm": args.only, "space": args.space, "batch": args.batch,
            "channels": args.channels, "cells": args.layers, "channels_last": args.channels_last,
            "torch": torch.__version__,
            "device": name, "threads": torch.get_num_threads(), "steps": len(timed),
            "median_s": statistics.median(timed), "min_s": min(timed), "max_s": max(timed),
            "peak_gib": peak_gib, "memory": measured}


def _line(r: dict[str, object]) -> str:
    return (f"{r['algorithm']:>9} | space {r['space']} | batch {r['batch']} | channels "
            f"{r['channels']} | cells {r['cells']} | channels_last {r['channels_last']} | "
            f"torch {r['torch']} | device {r['device']} | "
            f"threads {r['threads']} | s/step over {r['steps']} steps: median {r['median_s']:.2f} "
            f"min {r['min_s']:.2f} max {r['max_s']:.2f} | peak {r['memory']} {r['peak_gib']:.2f} GiB")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=ALGORITHMS, help="measure one algorithm in this process")
    parser.add_argument("--space", choices=("darts", "proxyless"), default="darts")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16, help="space=darts only")
    parser.add_argument("--layers", type=int, default=8, help="space=darts only")
    add_protocol_args(parser, precision=False)
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="NHWC images and weights, as data.channels_last (default: on)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.only:
        print(json.dumps(measure(args)), flush=True)
        return
    results = {}
    for algorithm in ALGORITHMS:
        child = [sys.executable, __file__, *argv, "--only", algorithm]
        out = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        results[algorithm] = json.loads(out.strip().splitlines()[-1])
        print(_line(results[algorithm]), flush=True)
    darts, proxyless = results["darts"], results["proxyless"]
    print(f"proxyless / darts: memory {proxyless['peak_gib'] / darts['peak_gib']:.2f}x, "
          f"time {proxyless['median_s'] / darts['median_s']:.2f}x | load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)")


if __name__ == "__main__":
    main(sys.argv[1:])
