"""The one way to derive a seed, or a seeded generator, from several integers.

A run derives its seeds from its own seed and where it is (epoch, step, rank, which draw of the
step): ``derived_seed(seed, epoch, rank)``, ``seeded_generator(seed, step, stream)``. The words
are mixed by numpy's ``SeedSequence``, so every word changes the result (packing them into one
integer would let the low 32 bits, all that torch's CPU generator keeps, drop the run's seed),
and nearby words (step 7 and step 8) give unrelated seeds.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["derived_seed", "seeded_generator"]


def derived_seed(*words: int) -> int:
    """A seed in ``[0, 2**32)`` mixed from ``words`` (at least one integer in ``[0, 2**64)``); the
    same words always give the same seed. Any generator takes it: ``random``, numpy, torch."""
    if not words or any(isinstance(word, bool) or not isinstance(word, (int, np.integer))
                        or not 0 <= word < 2**64 for word in words):
        raise ValueError(f"derived_seed takes one or more integers in [0, 2**64), got {words!r}")
    # Each word as two 32-bit halves after the word count: (5,) and (5, 0) differ, which
    # SeedSequence alone (it pads its input with zeros) would not tell apart.
    halves = [half for word in map(int, words) for half in (word % 2**32, word >> 32)]
    return int(np.random.SeedSequence([len(words), *halves]).generate_state(1)[0])


def seeded_generator(*words: int, device: torch.device | str | None = None) -> torch.Generator:
    """A torch generator on ``device`` (the CPU by default) seeded with ``derived_seed(*words)``."""
    generator = torch.Generator() if device is None else torch.Generator(device=device)
    return generator.manual_seed(derived_seed(*words))
