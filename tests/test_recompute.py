"""space.recompute=weighted|edge|cell: the same gradients and BatchNorm statistics, fewer stored
activations.

Each option's supernet holds the very weights of the default (``none``) one; in float64 the
weight and alpha gradients (first order, and second order through ``functional_call``) and the
running statistics after the steps must equal the default's.
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

import supernets.mixed as mixed
from conftest import compose_search
from oneshot.search.algorithms.unrolled import VirtualStep, unrolled_arch_gradients
from oneshot.search.architecture import ArchitectureParameters
from oneshot.train import train
from supernets.darts.search import DartsSupernet
from supernets.errors import SpaceError
from supernets.genotype_file import load_genotype_file
from supernets.choices import OpChoice
from supernets.mixed import MixedOp, SparseRow
from supernets.nb201.genotype import Nb201Genotype
from supernets.nb201.search import Nb201Supernet
from supernets.recompute import recomputed
from supernets.spaces import create_network, get_space
from test_algorithm_spaces import ALGORITHM_TINY, DECLARED, NO_SPACE, SPACE_TINY

CANDIDATES = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")
SPACES: dict[str, Callable[..., nn.Module]] = {
    "darts": lambda **kw: DartsSupernet(channels=2, layers=3, num_classes=3, steps=2,
                                        multiplier=2, candidates=CANDIDATES, **kw),
    "darts-partial": lambda **kw: DartsSupernet(channels=4, layers=3, num_classes=3, steps=2,
                                                multiplier=2, candidates=CANDIDATES,
                                                partial_channels=2, **kw),
    "nb201": lambda **kw: Nb201Supernet(channels=2, layers=1, num_classes=3, **kw),
}
STEP = VirtualStep(lr=0.5, momentum=0.9, weight_decay=3e-4)


def _pair(space: str, mode: str) -> tuple[nn.Module, nn.Module, ArchitectureParameters]:
    torch.manual_seed(0)
    plain = SPACES[space]().double().train()
    other = SPACES[space](recompute=mode).double().train()
    other.load_state_dict(plain.state_dict())
    arch = ArchitectureParameters(plain.choice_points(), init_std=1.0).double()
    return plain, other, arch


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64),
            torch.randint(0, 3, (2,), generator=generator))


def _statistics(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: b.clone() for name, b in model.named_buffers()}


def _first_order(model: nn.Module, arch: ArchitectureParameters) -> tuple[list, list]:
    """The architecture step's alpha gradient (autograd.grad), then a weight step's gradients
    (backward)."""
    x, y = _batch(1)
    loss = nn.functional.cross_entropy(model(x, arch.softmax()), y)
    alpha_grads = torch.autograd.grad(loss, arch.parameters_list())
    model.zero_grad()
    x, y = _batch(2)
    nn.functional.cross_entropy(model(x, {k: v.detach() for k, v in arch.softmax().items()}),
                                y).backward()
    return list(alpha_grads), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("space, mode", [("darts", "weighted"), ("darts", "edge"),
                                         ("darts", "cell"), ("darts-partial", "weighted"),
                                         ("darts-partial", "edge"), ("nb201", "weighted"),
                                         ("nb201", "edge"), ("nb201", "cell")])
def test_first_order_gradients_and_statistics_are_unchanged(space: str, mode: str) -> None:
    plain, other, arch = _pair(space, mode)
    alphas, weights = _first_order(plain, arch)
    alphas_r, weights_r = _first_order(other, arch)
    torch.testing.assert_close(alphas_r, alphas)
    torch.testing.assert_close(weights_r, weights)
    torch.testing.assert_close(_statistics(other), _statistics(plain))
    assert any(w.abs().sum() > 0 for w in weights) and any(a.abs().sum() > 0 for a in alphas)


@pytest.mark.parametrize("space", ["darts", "nb201"])
@pytest.mark.parametrize("mode", ["weighted", "edge", "cell"])
def test_second_order_gradients_and_statistics_are_unchanged(space: str, mode: str) -> None:
    plain, other, arch = _pair(space, mode)
    momentum = {name: 0.1 * torch.randn_like(p) for name, p in plain.named_parameters()}
    grads = [unrolled_arch_gradients(model, arch.softmax, arch.parameters_list(), _batch(1),
                                     _batch(2), nn.CrossEntropyLoss(), STEP, momentum)
             for model in (plain, other)]
    torch.testing.assert_close(grads[1], grads[0])
    torch.testing.assert_close(_statistics(other), _statistics(plain))
    assert all(p.grad is None for p in other.parameters())


def _saved_bytes_and_runs(model: nn.Module, arch: ArchitectureParameters,
                          part: str) -> tuple[int, int, int]:
    """Bytes autograd stores in a forward, and how many times the convolutions and the max
    pools inside the recomputed parts (``edges`` or ``cells``) run in forward plus backward."""
    saved = [0]
    calls = {nn.Conv2d: 0, nn.MaxPool2d: 0}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved[0] += tensor.numel() * tensor.element_size()
        return tensor

    def counter(kind: type) -> Callable[..., None]:
        return lambda *_: calls.__setitem__(kind, calls[kind] + 1)

    parts = [model.cells] if part == "cell" else [cell.edges for cell in model.cells]
    hooks = [m.register_forward_hook(counter(kind)) for p in parts for m in p.modules()
             for kind in calls if isinstance(m, kind)]
    x, y = _batch(1)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = nn.functional.cross_entropy(model(x, arch.softmax()), y)
    loss.backward()
    for hook in hooks:
        hook.remove()
    return saved[0], calls[nn.Conv2d], calls[nn.MaxPool2d]


@pytest.mark.parametrize("mode, stored_fraction, pools_run_again",
                         [("weighted", 1 / 2, False), ("edge", 1 / 3, True), ("cell", 1 / 3, True)])
def test_recompute_stores_less_and_runs_the_convolutions_again(
        mode: str, stored_fraction: float, pools_run_again: bool) -> None:
    plain, other, arch = _pair("darts", mode)
    saved, convolutions, pools = _saved_bytes_and_runs(plain, arch, mode)
    saved_r, convolutions_r, pools_r = _saved_bytes_and_runs(other, arch, mode)
    assert saved_r < saved * stored_fraction
    assert convolutions_r == 2 * convolutions > 0
    assert pools_r == (2 * pools if pools_run_again else pools) > 0


def test_switching_the_mode_tells_the_edges() -> None:
    _, other, _ = _pair("darts", "weighted")
    edges = [m for m in other.modules() if isinstance(m, MixedOp)]
    assert edges and all(edge.recompute_weighted for edge in edges)
    for cell in other.cells:
        cell.recompute = "edge"
    assert not any(edge.recompute_weighted for edge in edges)


def test_the_fixed_networks_ignore_it() -> None:
    genotype = Nb201Genotype(("nor_conv_3x3",) * 6)
    network = create_network("nb201", genotype, num_classes=3,
                             space_options={"channels": 4, "layers": 1, "recompute": "edge"})
    assert all(getattr(m, "recompute", "none") == "none" for m in network.modules())
    fixed = Nb201Supernet.fixed_network(genotype, channels=4, layers=1, recompute="cell")
    assert [cell.recompute for cell in fixed.cells if hasattr(cell, "recompute")] == ["none"] * 3
    plain, _, arch = _pair("darts", "cell")
    network = create_network("darts", plain.derive(arch.softmax()), num_classes=3, channels=4,
                             layers=3, auxiliary=False,
                             space_options={"channels": 2, "recompute": "cell"})
    assert network(torch.randn(2, 3, 8, 8))[0].shape == (2, 3)


@pytest.mark.parametrize("build", [DartsSupernet, Nb201Supernet])
def test_an_unknown_mode_is_one_line(build: Callable[..., nn.Module]) -> None:
    with pytest.raises(SpaceError, match=r"recompute must be one of none, weighted, edge, cell .*'layer'"):
        build(channels=4, layers=3, recompute="layer")


@pytest.mark.parametrize("unrolled", [False, True])
def test_a_weighted_search_from_the_command_line(unrolled: bool, tmp_path, monkeypatch) -> None:
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0])
        return recomputed(*args, **kwargs)

    monkeypatch.setattr(mixed, "recomputed", counted)
    result = train(compose_search(f"run_dir={tmp_path}", "space.recompute=weighted",
                                  f"algorithm.unrolled={str(unrolled).lower()}",
                                  "trainer.max_epochs=1", "trainer.limit_train_batches=2"))
    assert calls and all(isinstance(edge, MixedOp) for edge in calls)
    assert "recompute: weighted" in (tmp_path / "config.yaml").read_text()
    assert load_genotype_file(tmp_path / "genotype.json").genotype == result["genotype"].to_dict()


WEIGHTED_PAIRS = [(a, s) for a, s in DECLARED if s in ("darts", "nb201")]


@pytest.mark.parametrize("algorithm, space", WEIGHTED_PAIRS)
def test_every_algorithm_searches_with_weighted_recomputation(algorithm: str, space: str, tmp_path,
                                                              monkeypatch) -> None:
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[0])
        return recomputed(*args, **kwargs)

    monkeypatch.setattr(mixed, "recomputed", counted)
    result = train(compose_search(f"run_dir={tmp_path}", f"algorithm={algorithm}", *SPACE_TINY[space],
                                  *ALGORITHM_TINY.get(algorithm, ()), "space.recompute=weighted",
                                  "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                                  base=NO_SPACE))
    assert calls and all(isinstance(edge, MixedOp) for edge in calls)
    document = load_genotype_file(tmp_path / "genotype.json")
    assert document.meta["algorithm"] == algorithm
    assert get_space(space).genotype_from_dict(document.genotype) == result["genotype"]


def _sparse_rows(weights: torch.Tensor) -> dict[str, SparseRow]:
    """Rows of the sampling algorithms over CANDIDATES (none, max_pool, skip, sep, dil)."""
    return {"one convolution": SparseRow(weights, (3,)),
            "a pool and a convolution": SparseRow(weights, (1, 4)),
            "a frozen convolution (proxyless)": SparseRow(weights, (1, 3), frozen=(3,)),
            "constants (gdas reference)": SparseRow(weights, (4,), constants=True)}


@pytest.mark.parametrize("case", list(_sparse_rows(torch.zeros(5))))
def test_sampled_rows_give_the_same_values_and_gradients(case: str) -> None:
    torch.manual_seed(0)
    plain = OpChoice("e", CANDIDATES, channels=2).double()
    other = OpChoice("e", CANDIDATES, channels=2).double()
    other.load_state_dict(plain.state_dict())
    other.recompute_weighted = True
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    results = []
    for edge in (plain, other):
        weights = torch.softmax(torch.randn(5, generator=torch.Generator().manual_seed(1),
                                            dtype=torch.float64), 0).requires_grad_()
        out = edge(x, _sparse_rows(weights)[case])
        results.append([out, *torch.autograd.grad(out.square().sum(), [x, weights, *edge.parameters()],
                                                   materialize_grads=True)])
    torch.testing.assert_close(results[1], results[0])
    assert results[0][2].abs().sum() > 0  # the weights take a gradient
