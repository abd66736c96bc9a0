"""The cost of every candidate of a supernet at its input shape: latency (measured) or FLOPs.

Labels shared by several modules (the cells of one type in DARTS) get the sum over those
modules, because one choice there picks the operation of all of them. ``none`` and ``zero``
candidates cost nothing: the derived network leaves them out.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import torch
from torch import nn

from supernets.choices import OpChoice
from supernets.errors import SpaceError
from supernets.measure import count_flops
from supernets.mixed import SparseRow
from supernets.supernet import Supernet

FREE_CANDIDATES = ("none", "zero")
Shape = tuple[int, ...]
Measure = Callable[[nn.Module, Shape, torch.device], float]


def choice_inputs(supernet: Supernet,
                  input_size: Sequence[int]) -> dict[str, list[tuple[OpChoice, Shape]]]:
    """Every operation choice of each operation label with the input shape it sees.

    Runs one eval-mode forward pass of zeros (one cheap candidate per choice point) and records
    the input of every :class:`~supernets.choices.OpChoice`.
    """
    choices = supernet.choice_points()
    device = _device(supernet)
    rows = {}
    for label, names in choices.items():
        usable = [i for i, name in enumerate(names) if name not in FREE_CANDIDATES]
        if not usable:
            raise SpaceError(f"choice point '{label}' has only free candidates {names}")
        rows[label] = SparseRow(torch.zeros(len(names), device=device), (usable[0],))
    found: dict[str, list[tuple[OpChoice, Shape]]] = {
        label: [] for label in choices if isinstance(supernet.choice(label), OpChoice)}

    def record(module: nn.Module, args: tuple[object, ...]) -> None:
        if isinstance(module, OpChoice) and isinstance(args[0], torch.Tensor):
            found[module.label].append((module, tuple(args[0].shape)))

    handles = [m.register_forward_pre_hook(record) for m in supernet.modules()
               if isinstance(m, OpChoice)]
    was_training = supernet.training
    supernet.eval()
    try:
        with torch.no_grad():
            supernet(torch.zeros(*input_size, device=device), rows)
    finally:
        supernet.train(was_training)
        for handle in handles:
            handle.remove()
    unused = [label for label, seen in found.items() if not seen]
    if unused:
        raise SpaceError(f"choice point(s) {', '.join(unused)} were not used by the forward pass")
    return found


def candidate_costs(supernet: Supernet, input_size: Sequence[int],
                    measure: Measure) -> dict[str, dict[str, float]]:
    """``label -> candidate -> cost``: ``measure(op, input_shape, device)`` summed over the
    label's modules (on the supernet's device). Choosing inputs computes nothing: an input
    choice's candidates cost zero."""
    device = _device(supernet)
    costs: dict[str, dict[str, float]] = {
        label: dict.fromkeys(names, 0.0) for label, names in supernet.choice_points().items()
        if not isinstance(supernet.choice(label), OpChoice)}
    for label, uses in choice_inputs(supernet, input_size).items():
        row = {}
        for i, name in enumerate(uses[0][0].candidates):
            row[name] = 0.0 if name in FREE_CANDIDATES else \
                sum(measure(module.ops[i], shape, device) for module, shape in uses)
        costs[label] = row
    return costs


def mflops(module: nn.Module, shape: Shape, device: torch.device) -> float:
    """Millions of FLOPs of one eval-mode forward pass (2 per multiply-add, convolutions and
    matrix products only, as ``torch.utils.flop_counter`` counts)."""
    return count_flops(module, tuple(shape)) / 1e6


def latency_ms(module: nn.Module, shape: Shape, device: torch.device, *, warmup: int = 10,
               repeats: int = 30) -> float:
    """Median milliseconds of one eval-mode forward pass over ``repeats`` timed runs, after
    ``warmup`` untimed ones; CUDA work is synchronised before each clock reading."""
    x = torch.randn(*shape, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    was_training = module.training
    module.eval()
    times = []
    try:
        with torch.no_grad():
            for run in range(warmup + repeats):
                sync()
                start = time.perf_counter()
                module(x)
                sync()
                if run >= warmup:
                    times.append((time.perf_counter() - start) * 1e3)
    finally:
        module.train(was_training)
    return statistics.median(times)


def _device(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")
