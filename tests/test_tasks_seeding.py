"""The one seeding helper: same words, same seed; any changed word, an unrelated seed."""

from __future__ import annotations

import itertools

import pytest
import torch

from tasks.seeding import derived_seed, seeded_generator


def test_same_words_give_the_same_seed_and_draws() -> None:
    assert derived_seed(7, 3, 1) == derived_seed(7, 3, 1)
    first = torch.rand(5, generator=seeded_generator(7, 3, 1))
    assert torch.equal(first, torch.rand(5, generator=seeded_generator(7, 3, 1)))


def test_every_word_and_its_position_matter() -> None:
    words = [(seed, step, stream) for seed, step, stream in itertools.product(range(4), repeat=3)]
    seeds = {derived_seed(*w) for w in words}
    assert len(seeds) == len(words)  # no collision among neighbours, (0, 1, 2) != (2, 1, 0)
    assert derived_seed(2**32, 1) != derived_seed(0, 2**32 + 1)  # 64-bit words stay apart
    assert derived_seed(5) != derived_seed(5, 0) != derived_seed(5, 0, 0)


def test_high_bits_of_the_run_seed_matter() -> None:
    # Torch's CPU generator keeps 32 bits of a seed: the run's seed must not be shifted out.
    draws = {torch.randint(2**31, (1,), generator=seeded_generator(seed, 4, 0)).item()
             for seed in (1, 2**20 + 1, 2**31 + 1)}
    assert len(draws) == 3


def test_seed_fits_every_generator() -> None:
    seeds = [derived_seed(2**32 - 1, step) for step in range(200)]
    assert all(0 <= seed < 2**32 for seed in seeds)
    assert max(seeds) >= 2**31  # the whole 32-bit range is used


def test_generator_device_and_seed() -> None:
    generator = seeded_generator(1, 2, device="cpu")
    assert generator.device == torch.device("cpu")
    assert generator.initial_seed() == derived_seed(1, 2)


@pytest.mark.parametrize("words", [(), (-1,), (1, -2), (2**64,), (1.5,), (True,)])
def test_bad_words_are_refused(words: tuple) -> None:
    with pytest.raises(ValueError, match="derived_seed"):
        derived_seed(*words)
