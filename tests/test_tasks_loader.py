"""ShuffledBatchSampler and the in-memory loader: determinism, epochs, rank sharding, lengths."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from tasks import TaskError
from tasks.loader import ShuffledBatchSampler, TensorBatchDataset, make_loader


def _epoch(sampler: ShuffledBatchSampler, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    return torch.cat(list(sampler)).tolist()


def test_deterministic_per_seed_and_epoch() -> None:
    a = ShuffledBatchSampler(50, 8, shuffle=True, seed=1, drop_last=False)
    b = ShuffledBatchSampler(50, 8, shuffle=True, seed=1, drop_last=False)
    assert _epoch(a, 0) == _epoch(b, 0)
    assert sorted(_epoch(a, 0)) == list(range(50))
    assert _epoch(a, 1) != _epoch(a, 0) and _epoch(a, 1) == _epoch(b, 1)
    other = ShuffledBatchSampler(50, 8, shuffle=True, seed=2, drop_last=False)
    assert _epoch(other, 0) != _epoch(a, 0)
    assert _epoch(other, 0) != _epoch(a, 1)


def test_lengths_and_batches() -> None:
    keep = ShuffledBatchSampler(50, 8, shuffle=False, seed=0, drop_last=False)
    drop = ShuffledBatchSampler(50, 8, shuffle=False, seed=0, drop_last=True)
    assert len(keep) == 7 and [len(b) for b in keep] == [8] * 6 + [2]
    assert len(drop) == 6 and [len(b) for b in drop] == [8] * 6
    assert torch.cat(list(keep)).tolist() == list(range(50))


def test_rank_shards_are_disjoint_equal_and_cover() -> None:
    shards = [ShuffledBatchSampler(40, 4, shuffle=True, seed=0, drop_last=False,
                                   num_replicas=4, rank=r) for r in range(4)]
    items = [_epoch(s, 3) for s in shards]
    assert all(len(i) == 10 and len(s) == 3 for i, s in zip(items, shards))
    assert sorted(sum(items, [])) == list(range(40))
    uneven = [_epoch(ShuffledBatchSampler(42, 4, shuffle=True, seed=0, drop_last=False,
                                          num_replicas=4, rank=r), 0) for r in range(4)]
    assert {len(i) for i in uneven} == {10} and len(set(sum(uneven, []))) == 40


def test_rank_comes_from_torch_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    sampler = ShuffledBatchSampler(10, 5, shuffle=False, seed=0, drop_last=False)
    assert (sampler.num_replicas, sampler.rank) == (2, 1)
    assert _epoch(sampler, 0) == [5, 6, 7, 8, 9]


def test_invalid_arguments() -> None:
    with pytest.raises(TaskError, match="rank 2 is outside"):
        ShuffledBatchSampler(10, 2, shuffle=True, seed=0, drop_last=False, num_replicas=2, rank=2)
    with pytest.raises(TaskError, match="batch_size must be >= 1"):
        ShuffledBatchSampler(10, 0, shuffle=True, seed=0, drop_last=False)
    with pytest.raises(TaskError, match="3 images but 2 labels"):
        TensorBatchDataset(torch.zeros(3, 1), torch.zeros(2))


def test_make_loader_yields_matching_batches() -> None:
    images = torch.arange(20).view(20, 1, 1, 1).to(torch.uint8)
    labels = torch.arange(20)
    loader = make_loader(images, labels, batch_size=6, shuffle=True, seed=0, drop_last=True)
    batches = list(loader)
    assert len(loader) == 3 and len(batches) == 3
    for x, y in batches:
        assert x.shape == (6, 1, 1, 1) and torch.equal(x.flatten().long(), y)
    loader.sampler.set_epoch(1)
    assert not torch.equal(next(iter(loader))[1], batches[0][1])


def test_fixed_order_ignores_the_epoch_and_is_seeded() -> None:
    fixed = ShuffledBatchSampler(200, 64, shuffle=True, seed=4, drop_last=False, reshuffle=False)
    first = _epoch(fixed, 0)
    assert _epoch(fixed, 5) == first and sorted(first) == list(range(200))
    assert first != list(range(200))
    same = ShuffledBatchSampler(200, 64, shuffle=True, seed=4, drop_last=False, reshuffle=False)
    assert _epoch(same, 2) == first
    other = ShuffledBatchSampler(200, 64, shuffle=True, seed=5, drop_last=False, reshuffle=False)
    assert _epoch(other, 0) != first
    labels = torch.arange(200) // 20
    assert len(set(labels[first[:64]].tolist())) >= 5
