"""Where a first-order DARTS step spends its time: torch.profiler per phase and per operator.

The step's maths as the ``darts`` algorithm runs it, without the Lightning loop: the
architecture step (forward on a validation batch with the weights as constants,
``torch.autograd.grad`` of the loss w.r.t. the alphas) and the weight step (forward on a training batch, ``backward``, SGD). Prints the wall
seconds of each phase and the operators with the most self CPU time.

    python benchmarks/profile_darts_step.py                              # batch 32, 8 ch, 5 cells
    python benchmarks/profile_darts_step.py --batch 64 --channels 16 --layers 8 --top 25
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable, Sequence

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from oneshot.search.architecture import ArchitectureParameters, weights_as_constants
from supernets.darts.search import DartsSupernet


def step(model: nn.Module, arch: ArchitectureParameters, optimizer: torch.optim.Optimizer,
         batches: tuple[tuple[torch.Tensor, torch.Tensor], ...]) -> None:
    """One first-order DARTS step: the alpha gradient, then a weight update."""
    (x_w, y_w), (x_a, y_a) = batches
    with record_function("architecture step"), weights_as_constants(model):
        loss = nn.functional.cross_entropy(model(x_a, arch.softmax()), y_a)
        grads = torch.autograd.grad(loss, arch.parameters_list())
        for alpha, grad in zip(arch.parameters_list(), grads):
            alpha.grad = grad
    with record_function("weight step"):
        optimizer.zero_grad()
        with torch.no_grad():
            weights = {label: row.detach() for label, row in arch.softmax().items()}
        nn.functional.cross_entropy(model(x_w, weights), y_w).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()


Setup = tuple[nn.Module, ArchitectureParameters, torch.optim.Optimizer,
              tuple[tuple[torch.Tensor, torch.Tensor], ...]]


def add_size_args(parser: argparse.ArgumentParser) -> None:
    """The supernet and batch sizes (the small configuration by default)."""
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--layers", type=int, default=5)


def darts_step_setup(args: argparse.Namespace) -> Setup:
    """A seeded channels-last DARTS supernet, its alphas, DARTS' SGD and two random batches."""
    torch.manual_seed(0)
    model = DartsSupernet(channels=args.channels, layers=args.layers).train()
    model = model.to(memory_format=torch.channels_last)
    arch = ArchitectureParameters(model.choice_points())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    batches = tuple((torch.randn(args.batch, 3, 32, 32).to(memory_format=torch.channels_last),
                     torch.randint(0, 10, (args.batch,))) for _ in range(2))
    return model, arch, optimizer, batches


def ab_setup(argv: list[str], description: str, rounds: int) -> tuple[argparse.Namespace, Setup]:
    """The options of an alternating comparison (sizes and ``--rounds``) and its step setup."""
    parser = argparse.ArgumentParser(description=description)
    add_size_args(parser)
    parser.add_argument("--rounds", type=int, default=rounds)
    args = parser.parse_args(argv)
    return args, darts_step_setup(args)


def alternating_step_seconds(setup: Setup, variants: Sequence[str], switch: Callable[[str], None],
                             rounds: int) -> dict[str, list[float]]:
    """Seconds of one :func:`step` per variant and round. ``switch(variant)`` sets the variant;
    the order rotates every round so that the machine's load weighs on every variant alike, and
    a first, untimed round warms up."""
    seconds: dict[str, list[float]] = {variant: [] for variant in variants}
    for r in range(rounds + 1):
        shift = r % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            switch(variant)
            start = time.perf_counter()
            step(*setup)
            if r:
                seconds[variant].append(time.perf_counter() - start)
    return seconds


def print_old_new(args: argparse.Namespace, seconds: dict[str, list[float]]) -> None:
    """The sizes, then the median seconds of variants ``old`` and ``new``, their ratio and the
    ratio of every round."""
    old, new = statistics.median(seconds["old"]), statistics.median(seconds["new"])
    print(f"batch {args.batch} | channels {args.channels} | cells {args.layers} | "
          f"threads {torch.get_num_threads()} | {args.rounds} rounds")
    ratios = ", ".join(f"{n / o:.3f}" for o, n in zip(seconds["old"], seconds["new"]))
    print(f"  old {old:.2f} s/step  new {new:.2f} s/step  new/old {new / old:.3f}  "
          f"(per-round ratios: {ratios})")


def run_old_new(argv: list[str], description: str,
                use_new: Callable[[nn.Module, bool], None]) -> None:
    """An alternating A/B of the step: ``use_new(supernet, variant == "new")`` switches the
    supernet between the variants ``old`` and ``new``; prints :func:`print_old_new`."""
    args, setup = ab_setup(argv, description, rounds=5)
    seconds = alternating_step_seconds(setup, ("old", "new"),
                                       lambda variant: use_new(setup[0], variant == "new"),
                                       args.rounds)
    print_old_new(args, seconds)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size_args(parser)
    parser.add_argument("--steps", type=int, default=2, help="profiled steps after one warm-up")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    model, arch, optimizer, batches = darts_step_setup(args)
    step(model, arch, optimizer, batches)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step(model, arch, optimizer, batches)
    seconds = (time.perf_counter() - start) / args.steps
    print(f"batch {args.batch} | channels {args.channels} | cells {args.layers} | "
          f"threads {torch.get_num_threads()} | {seconds:.2f} s/step under the profiler")
    events = prof.key_averages()
    for phase in ("architecture step", "weight step"):
        total = next(e for e in events if e.key == phase).cpu_time_total / 1e6 / args.steps
        print(f"  {phase}: {total:.2f} s/step")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main(sys.argv[1:])
