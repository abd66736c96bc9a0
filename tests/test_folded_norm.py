"""Trailing BatchNorms folded into the edge's weighted sum: the same values, gradients and
running statistics as each candidate normalised and then summed, and no normalised map stored."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from oneshot.search.algorithms.unrolled import VirtualStep, unrolled_arch_gradients
from oneshot.search.architecture import ArchitectureParameters
from supernets.batchnorm import BatchNorm2d, FoldSlot
from supernets.choices import OpChoice
from supernets.darts.search import DartsSupernet, _search_op
from supernets.folded_norm import Term, attach_fold_slot, folded_weighted_sum
from supernets.mixed import SparseRow, use_folded_norms
from supernets.nb201.search import Nb201Supernet
from supernets.ops import DARTS_PRIMITIVES, create_op

CANDIDATES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
              "dil_conv_5x5")


def _edge_pair(channels: int, stride: int = 1,
               momentum: float | None = 0.1) -> tuple[OpChoice, OpChoice]:
    """(folded, as written) copies of one DARTS search edge (pools followed by a BatchNorm)
    in float64."""
    torch.manual_seed(0)
    folded = OpChoice("e", CANDIDATES,
                      build=lambda name: _search_op(name, channels, stride)).double()
    for module in folded.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = momentum
    written = copy.deepcopy(folded)
    use_folded_norms(written, False)
    return folded, written


@pytest.mark.parametrize("name", ["sep_conv_3x3", "dil_conv_5x5", "max_pool_3x3",
                                  "avg_pool_3x3"])
def test_darts_candidates_defer_their_last_batchnorm_to_an_open_slot(name: str) -> None:
    op = _search_op(name, 4, 1)
    slot = FoldSlot()
    assert attach_fold_slot(op, slot)
    norms = [m for m in op.modules() if isinstance(m, BatchNorm2d)]
    assert [m.fold_slot is slot for m in norms] == [False] * (len(norms) - 1) + [True]
    x = torch.randn(2, 4, 6, 6)
    closed = op(x)
    slot.open = True
    deferred = op(x)
    assert slot.norm is norms[-1] and not torch.allclose(deferred, closed)
    slot.open = False
    torch.testing.assert_close(norms[-1](deferred), closed)


@pytest.mark.parametrize("op", [nn.Identity(), create_op("sep_conv_3x3", 4, 1, affine=True),
                                nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4, affine=False)),
                                nn.Sequential()])
def test_other_candidates_take_no_slot(op: nn.Module) -> None:
    assert not attach_fold_slot(op, FoldSlot())


@pytest.mark.parametrize("channels, memory_format", [(16, torch.channels_last),
                                                     (4, torch.channels_last),
                                                     (4, torch.contiguous_format)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_an_edge_gives_the_same_values_gradients_and_statistics(
        channels: int, memory_format: torch.memory_format, stride: int,
        momentum: float | None) -> None:
    folded, written = _edge_pair(channels, stride, momentum)
    x = torch.randn(3, channels, 8, 8, dtype=torch.float64).to(memory_format=memory_format)
    results = []
    for edge in (folded, written):
        for _ in range(2):  # the second step sees the updated counters (cumulative momentum)
            x_in = x.clone().requires_grad_()
            weights = torch.softmax(torch.randn(len(CANDIDATES), dtype=torch.float64,
                                                generator=torch.Generator().manual_seed(1)),
                                    0).requires_grad_()
            out = edge(x_in, weights)
            upstream = torch.randn(out.shape, dtype=torch.float64,
                                   generator=torch.Generator().manual_seed(2))
            grads = torch.autograd.grad((out * upstream).sum(),
                                        [x_in, weights, *edge.parameters()])
        results.append([out, *grads, *(b.clone() for b in edge.buffers())])
    torch.testing.assert_close(results[0], results[1])
    assert results[0][2].abs().sum() > 0  # the weights take a gradient


@pytest.mark.parametrize("active", [(1,), (3,), (1, 3, 4), (2, 5)])
def test_sampled_rows_fold_what_they_run(active: tuple[int, ...]) -> None:
    folded, written = _edge_pair(4)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(len(CANDIDATES), dtype=torch.float64)
    results = []
    for edge in (folded, written):
        weights = torch.softmax(logits, 0).requires_grad_()
        row = SparseRow(weights, active)
        out = edge(x, row)
        results.append([out, *torch.autograd.grad(out.square().sum(), [x, weights],
                                                   materialize_grads=True),
                        *(b.clone() for b in edge.buffers())])
    torch.testing.assert_close(results[0], results[1])


def test_evaluation_with_running_statistics_runs_as_written() -> None:
    folded, written = _edge_pair(4)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    weights = torch.softmax(torch.randn(len(CANDIDATES), dtype=torch.float64), 0)
    folded(x, weights)  # running statistics to evaluate with
    written(x, weights)
    folded.eval(), written.eval()
    counted = [m.num_batches_tracked.clone() for m in folded.modules()
               if isinstance(m, BatchNorm2d)]
    torch.testing.assert_close(folded(x, weights), written(x, weights))
    assert [m.num_batches_tracked for m in folded.modules()
            if isinstance(m, BatchNorm2d)] == counted


def _stored_bytes(edge: OpChoice, x: torch.Tensor, weights: torch.Tensor) -> int:
    saved = [0]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved[0] += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        edge(x, weights)
    return saved[0]


def test_the_architecture_step_stores_no_normalised_map() -> None:
    folded, written = _edge_pair(4)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    weights = torch.softmax(torch.randn(len(CANDIDATES), dtype=torch.float64), 0).requires_grad_()
    map_bytes = x.numel() * x.element_size()
    normalised = 4  # max_pool, avg_pool, sep_conv, dil_conv end in a BatchNorm
    assert (_stored_bytes(written, x, weights) - _stored_bytes(folded, x, weights)
            >= normalised * map_bytes)


def _supernet_pair(space: str) -> tuple[nn.Module, nn.Module, ArchitectureParameters]:
    torch.manual_seed(0)
    build = {"darts": lambda: DartsSupernet(channels=4, layers=3, num_classes=3, steps=2,
                                            multiplier=2, candidates=DARTS_PRIMITIVES),
             "nb201": lambda: Nb201Supernet(channels=4, layers=1, num_classes=3)}[space]
    folded = build().double().train()
    written = copy.deepcopy(folded)
    use_folded_norms(written, False)
    return folded, written, ArchitectureParameters(folded.choice_points(), init_std=1.0).double()


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64),
            torch.randint(0, 3, (2,), generator=generator))


@pytest.mark.parametrize("space", ["darts", "nb201"])
def test_a_supernet_gives_the_same_first_and_second_order_gradients(space: str) -> None:
    folded, written, arch = _supernet_pair(space)
    results = []
    momentum = {name: 0.1 * torch.randn_like(p) for name, p in folded.named_parameters()}
    for model in (folded, written):
        x, y = _batch(1)
        loss = nn.functional.cross_entropy(model(x, arch.softmax()), y)
        first = torch.autograd.grad(loss, [*arch.parameters_list(), *model.parameters()])
        second = unrolled_arch_gradients(model, arch.softmax, arch.parameters_list(), _batch(2),
                                         _batch(3), nn.CrossEntropyLoss(),
                                         VirtualStep(lr=0.5, momentum=0.9, weight_decay=3e-4),
                                         momentum)
        results.append([loss, *first, *second, *(b.clone() for b in model.buffers())])
    torch.testing.assert_close(results[0], results[1])


def test_a_sum_without_a_norm_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one term with a norm"):
        folded_weighted_sum(torch.ones(1), [Term(0, torch.ones(1, 1, 2, 2), None)])
