"""Time of space.recompute=weighted, =edge and =cell against none, alternating in one process.

One DARTS supernet whose cells switch their ``recompute`` mode step by step (the order rotates
every round), so the machine's load weighs on every mode alike; a step is the first-order DARTS
step maths of ``profile_darts_step.py``. Peak memory needs one process per mode:
``search_step.py --recompute MODE``.

    python benchmarks/recompute_ab.py                     # batch 32, 8 ch, 5 cells, 4 rounds
"""

from __future__ import annotations

import statistics
import sys

import torch

from profile_darts_step import ab_setup, alternating_step_seconds
from supernets.recompute import RECOMPUTE_MODES


def main(argv: list[str]) -> None:
    args, setup = ab_setup(argv, __doc__.splitlines()[0], rounds=4)
    model = setup[0]

    def switch(mode: str) -> None:
        for cell in model.cells:
            cell.recompute = mode

    seconds = alternating_step_seconds(setup, RECOMPUTE_MODES, switch, args.rounds)
    base = statistics.median(seconds["none"])
    print(f"batch {args.batch} | channels {args.channels} | cells {args.layers} | "
          f"threads {torch.get_num_threads()} | {args.rounds} rounds")
    for mode, times in seconds.items():
        print(f"  recompute {mode}: median {statistics.median(times):.2f} s/step, "
              f"{statistics.median(times) / base:.2f}x none")


if __name__ == "__main__":
    main(sys.argv[1:])
