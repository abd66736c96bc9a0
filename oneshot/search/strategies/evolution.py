"""Aging (regularized) evolution (Real et al., 2019): tournament selection, oldest dies."""

from __future__ import annotations

from collections import deque
from typing import Sequence

import torch

from oneshot.search.strategies.base import (Architecture, Evaluator, Score, SearchResult, mutate,
                                            uniform_architecture)
from supernets.decisions import Choice


def aging_evolution(decisions: Sequence[Choice], score: Score, *, population: int,
                    sample_size: int, cycles: int, generator: torch.Generator) -> SearchResult:
    """Evolve architectures for ``cycles`` evaluations in all (the first ``population`` drawn
    uniformly).

    Each later cycle draws ``sample_size`` members of the population uniformly (with
    replacement), mutates one decision of the best of them, scores the child, adds it and
    removes the oldest member. An architecture met again is not re-scored.
    """
    for name, value, low in (("population", population, 1), ("sample_size", sample_size, 1),
                             ("cycles", cycles, population)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    evaluate = Evaluator(score)
    alive: deque[tuple[Architecture, float]] = deque()
    while len(alive) < population:
        architecture = uniform_architecture(decisions, generator)
        alive.append((architecture, evaluate(architecture)))
    while len(evaluate.result.history) < cycles:
        picks = torch.randint(len(alive), (sample_size,), generator=generator).tolist()
        parent = max((alive[i] for i in picks), key=lambda member: member[1])[0]
        child = mutate(parent, decisions, generator)
        alive.append((child, evaluate(child)))
        alive.popleft()
    return evaluate.result
