"""Time of space.recompute=edge and =cell against none, alternating in one process.

One DARTS supernet whose cells switch their ``recompute`` mode step by step (the order rotates
every round), so the machine's load weighs on every mode alike; a step is the first-order DARTS
step maths of ``profile_darts_step.py``. Peak memory needs one process per mode:
``search_step.py --recompute MODE``.

    python benchmarks/recompute_ab.py                     # batch 32, 8 ch, 5 cells, 4 rounds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from profile_darts_step import add_size_args, darts_step_setup, step
from supernets.recompute import RECOMPUTE_MODES


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size_args(parser)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    model, arch, optimizer, batches = darts_step_setup(args)
    seconds: dict[str, list[float]] = {mode: [] for mode in RECOMPUTE_MODES}
    for r in range(args.rounds + 1):
        shift = r % len(RECOMPUTE_MODES)
        for mode in RECOMPUTE_MODES[shift:] + RECOMPUTE_MODES[:shift]:
            for cell in model.cells:
                cell.recompute = mode
            start = time.perf_counter()
            step(model, arch, optimizer, batches)
            if r:  # the first round warms up
                seconds[mode].append(time.perf_counter() - start)
    base = statistics.median(seconds["none"])
    print(f"batch {args.batch} | channels {args.channels} | cells {args.layers} | "
          f"threads {torch.get_num_threads()} | {args.rounds} rounds")
    for mode, times in seconds.items():
        print(f"  recompute {mode}: median {statistics.median(times):.2f} s/step, "
              f"{statistics.median(times) / base:.2f}x none")


if __name__ == "__main__":
    main(sys.argv[1:])
