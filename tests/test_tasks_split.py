"""Search split: seeded, disjoint halves; subset selection and its errors."""

from __future__ import annotations

import pytest
import torch

from tasks import TaskError
from tasks.split import search_split


def test_halves_are_disjoint_and_cover() -> None:
    weight, arch = search_split(11, seed=0)
    assert len(weight) == 5 and len(arch) == 6
    assert sorted(torch.cat([weight, arch]).tolist()) == list(range(11))
    assert weight.dtype == torch.int64


def test_seeded() -> None:
    first, second, other = search_split(100, 7), search_split(100, 7), search_split(100, 8)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])


def test_subset_selects_seeded_images() -> None:
    weight, arch = search_split(1000, seed=1, subset=10)
    assert len(weight) == 5 and len(arch) == 5
    chosen = set(torch.cat([weight, arch]).tolist())
    assert len(chosen) == 10 and max(chosen) < 1000
    assert chosen == set(torch.cat(search_split(1000, seed=1, subset=10)).tolist())
    assert chosen != set(torch.cat(search_split(1000, seed=2, subset=10)).tolist())


@pytest.mark.parametrize("subset", [1, 0, 101])
def test_subset_out_of_range(subset: int) -> None:
    expected = f"subset={subset} is out of range; choose 2 <= subset <= 100"
    with pytest.raises(TaskError, match=expected):
        search_split(100, seed=0, subset=subset)


def test_too_few_images() -> None:
    with pytest.raises(TaskError, match="at least 2 training images, got 1"):
        search_split(1, seed=0)


def test_halves_are_in_random_order_so_prefixes_mix_classes() -> None:
    labels = torch.arange(200) // 20  # stored class by class, like an image-folder tree
    for half in search_split(200, seed=0):
        assert not torch.equal(half, half.sort().values)
        assert len(set(labels[half[:32]].tolist())) >= 5
