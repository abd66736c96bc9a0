"""Random search: architectures drawn uniformly, the best one kept."""

from __future__ import annotations

from typing import Sequence

import torch

from oneshot.search.strategies.base import Evaluator, Score, SearchResult, uniform_architecture
from supernets.decisions import Choice


def random_search(decisions: Sequence[Choice], score: Score, *, evaluations: int,
                  generator: torch.Generator) -> SearchResult:
    """Score ``evaluations`` uniformly drawn architectures (one met again is not re-scored)."""
    if isinstance(evaluations, bool) or not isinstance(evaluations, int) or evaluations < 1:
        raise ValueError(f"evaluations must be an integer >= 1, got {evaluations!r}")
    evaluate = Evaluator(score)
    for _ in range(evaluations):
        evaluate(uniform_architecture(decisions, generator))
    return evaluate.result
