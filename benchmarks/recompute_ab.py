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

from oneshot.search.architecture import ArchitectureParameters
from profile_darts_step import step
from supernets.darts.search import DartsSupernet
from supernets.recompute import RECOMPUTE_MODES


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = DartsSupernet(channels=args.channels, layers=args.layers).train()
    model = model.to(memory_format=torch.channels_last)
    arch = ArchitectureParameters(model.choice_points())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    batches = tuple((torch.randn(args.batch, 3, 32, 32).to(memory_format=torch.channels_last),
                     torch.randint(0, 10, (args.batch,))) for _ in range(2))
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
