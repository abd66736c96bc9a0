"""What the searches share: uniform draws, one-choice mutation, scored history and its best."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch

from supernets.decisions import Choice

Architecture = dict[str, int]
Score = Callable[[Mapping[str, int]], float]


def _draw(n: int, generator: torch.Generator) -> int:
    return int(torch.randint(n, (), generator=generator))


def uniform_architecture(decisions: Sequence[Choice], generator: torch.Generator) -> Architecture:
    """Every decision's candidate drawn uniformly."""
    return {d.label: _draw(len(d.candidates), generator) for d in decisions}


def mutate(architecture: Mapping[str, int], decisions: Sequence[Choice],
           generator: torch.Generator) -> Architecture:
    """``architecture`` with one uniformly chosen decision changed to another of its candidates
    (decisions with a single candidate are never chosen; with none left it is returned as is)."""
    mutable = [d for d in decisions if len(d.candidates) > 1]
    child = dict(architecture)
    if not mutable:
        return child
    decision = mutable[_draw(len(mutable), generator)]
    others = [i for i in range(len(decision.candidates)) if i != child[decision.label]]
    child[decision.label] = others[_draw(len(others), generator)]
    return child


@dataclass
class SearchResult:
    """Every evaluation in order (``history``: architecture and score) and the best of them
    (the earliest on ties)."""

    history: list[tuple[Architecture, float]] = field(default_factory=list)

    @property
    def best(self) -> Architecture:
        """The highest-scored architecture."""
        return self.history[self._best_index()][0]

    @property
    def best_score(self) -> float:
        """The highest score."""
        return self.history[self._best_index()][1]

    def _best_index(self) -> int:
        if not self.history:
            raise ValueError("the search evaluated no architecture")
        return max(range(len(self.history)), key=lambda i: self.history[i][1])


class Evaluator:
    """Scores architectures, each distinct one once, and records every evaluation."""

    def __init__(self, score: Score) -> None:
        self.score = score
        self.result = SearchResult()
        self._cache: dict[tuple[tuple[str, int], ...], float] = {}

    def __call__(self, architecture: Architecture) -> float:
        key = tuple(sorted(architecture.items()))
        if key not in self._cache:
            self._cache[key] = float(self.score(architecture))
        self.result.history.append((architecture, self._cache[key]))
        return self._cache[key]
