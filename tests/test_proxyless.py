"""ProxylessNAS: the MBConv macro space, binary gates, the two-path update, both spaces end to end."""

from __future__ import annotations

import json

import pytest
import pytorch_lightning as pl
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY_SEARCH, compose_search
from oneshot.search.algorithms import algorithm_defaults, create_algorithm
from oneshot.search.algorithms.binary_gates import (
    binary_gate_alpha_grad, rescale_pairs, sample_pairs, sample_paths)
from oneshot.search.algorithms.sampling import step_generator
from oneshot.search.algorithms.proxyless import LatencyConfig, ProxylessSearch
from oneshot.tables.cost import CostTable, expected_cost
from oneshot.errors import ConfigError
from oneshot.retrain import retrain
from oneshot.train import train
from supernets.darts.genotype import DartsGenotype
from supernets.errors import GenotypeError, SpaceError
from supernets.genotype_file import load_genotype_file
from supernets.mixed import MixedOp, SparseRow
from supernets.proxyless.blocks import MBConv, build_candidate
from supernets.proxyless.genotype import ProxylessGenotype
from supernets.proxyless.search import ProxylessSupernet
from supernets.spaces import create_network, create_supernet

SMALL = {"stem_channels": 4, "first_channels": 4, "widths": [4, 8], "depths": [2, 2],
         "strides": [1, 2], "head_channels": 8}
SMALL_OVERRIDES = ("space=proxyless", "space.stem_channels=4", "space.first_channels=4",
                   "space.widths=[4,8]", "space.depths=[2,2]", "space.strides=[1,2]",
                   "space.head_channels=8")
OPS = ["mb3_k3", "mb3_k5", "mb3_k7", "mb6_k3", "mb6_k5", "mb6_k7"]


def _supernet(**options: object) -> ProxylessSupernet:
    torch.manual_seed(0)
    return ProxylessSupernet(num_classes=3, **{**SMALL, **options})


def _search(supernet: torch.nn.Module | None = None, **latency: object) -> ProxylessSearch:
    return create_algorithm("proxyless", supernet or _supernet(), num_classes=3,
                            cfg={"seed": 7, "latency": latency})


def _latency(**options: object) -> LatencyConfig:
    """The default latency options with ``options`` on top."""
    return LatencyConfig(**{**algorithm_defaults("proxyless")["latency"], **options})


def _batch(n: int = 4, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=generator), torch.randint(0, 3, (n,),
                                                                              generator=generator)


def _count_calls(supernet: torch.nn.Module) -> dict[tuple[int, int], list[bool]]:
    """``(mixed op number, candidate) -> [grad enabled at each call]``."""
    calls: dict[tuple[int, int], list[bool]] = {}
    for m, mixed in enumerate(x for x in supernet.modules() if isinstance(x, MixedOp)):
        for i, op in enumerate(mixed.ops):
            op.register_forward_hook(lambda *_, key=(m, i): calls.setdefault(key, []).append(
                torch.is_grad_enabled()))
    return calls


# -- the space --------------------------------------------------------------------------------
def test_default_space_has_proxylessnas_stages_and_candidates() -> None:
    with torch.device("meta"):
        supernet = create_supernet("proxyless", num_classes=10)
    points = supernet.choice_points()
    assert list(points) == [f"block_{i}" for i in range(21)]
    firsts = {0, 4, 8, 12, 16, 20}  # depths 4, 4, 4, 4, 4, 1
    for i, names in enumerate(points.values()):
        assert names == (OPS if i in firsts else OPS + ["zero"])
    assert [block.residual for block in supernet.blocks] == [i not in firsts for i in range(21)]


def test_search_block_adds_the_input_so_zero_skips_it() -> None:
    supernet = _supernet()
    block = supernet.blocks[1]  # second block of the first stage: 4 -> 4 channels, stride 1
    x = torch.randn(2, 4, 8, 8)
    zero = len(block.mixed.candidates) - 1
    assert block.mixed.candidates[zero] == "zero"
    with supernet.bound({"block_1": SparseRow(torch.ones(7), (zero,))}):
        torch.testing.assert_close(block(x), x)
    mb = block.mixed.ops[0]
    with supernet.bound({"block_1": SparseRow(torch.ones(7), (0,))}):
        torch.testing.assert_close(block(x), x + mb(x))


def test_mbconv_layers_and_residual() -> None:
    block = MBConv(4, 4, kernel_size=5, stride=1, expansion=6, residual=True)
    convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.groups) for c in convs] == [
        (4, 24, (1, 1), 1), (24, 24, (5, 5), 24), (24, 4, (1, 1), 1)]
    assert sum(isinstance(m, torch.nn.ReLU6) for m in block.modules()) == 2
    block.eval()
    x = torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(block(x), x + block.body(x))
    with pytest.raises(SpaceError, match="residual needs stride 1"):
        MBConv(4, 8, kernel_size=3, stride=2, expansion=3, residual=True)


@pytest.mark.parametrize("options, message", [
    ({"widths": [4], "depths": [1, 2], "strides": [1]}, "one entry per stage"),
    ({"strides": [1, 3]}, "strides must hold 1 or 2"),
    ({"kernel_sizes": [3, 4]}, "kernel_sizes must be odd"),
    ({"depths": [2, 0]}, "depths must be a positive integer"),
])
def test_bad_space_options_are_one_line_errors(options: dict, message: str) -> None:
    with pytest.raises(SpaceError, match=message) as info:
        _supernet(**options)
    assert "\n" not in str(info.value)


def _weights(supernet: ProxylessSupernet, choice: dict[str, str]) -> dict[str, torch.Tensor]:
    weights = {}
    for label, names in supernet.choice_points().items():
        row = torch.full((len(names),), 0.1)
        row[names.index(choice.get(label, "mb3_k3"))] = 0.5
        weights[label] = row
    return weights


def test_derive_takes_the_argmax_per_block_and_round_trips() -> None:
    supernet = _supernet()
    genotype = supernet.derive(_weights(supernet, {"block_1": "zero", "block_2": "mb6_k7",
                                                   "block_3": "mb3_k5"}))
    assert genotype.stages == ((4, 1, ("mb3_k3", "zero")), (8, 2, ("mb6_k7", "mb3_k5")))
    assert genotype.ops == ("mb3_k3", "zero", "mb6_k7", "mb3_k5")
    assert str(genotype) == "4/s1: mb3_k3 zero | 8/s2: mb6_k7 mb3_k5"
    document = json.loads(json.dumps(genotype.to_dict()))
    assert document["stages"][1] == {"width": 8, "stride": 2, "ops": ["mb6_k7", "mb3_k5"]}
    assert ProxylessGenotype.from_dict(document) == genotype


@pytest.mark.parametrize("change, message", [
    (lambda d: d["stages"][0]["ops"].__setitem__(0, "zero"), r"stages\[0\].ops\[0\]' is 'zero'"),
    (lambda d: d["stages"][1]["ops"].__setitem__(1, "mb3_k4"), r"stages\[1\].ops\[1\]'.*mb3_k4"),
    (lambda d: d["stages"][1].__setitem__("stride", 3), r"stages\[1\].stride' must be 1 or 2"),
    (lambda d: d.pop("head_channels"), "'head_channels' is missing"),
    (lambda d: d.__setitem__("cells", 1), r"unknown genotype field\(s\) cells"),
])
def test_bad_genotype_dicts_name_the_field(change, message: str) -> None:
    document = _supernet().derive(_weights(_supernet(), {})).to_dict()
    change(document)
    with pytest.raises(GenotypeError, match=message) as info:
        ProxylessGenotype.from_dict(document)
    assert "\n" not in str(info.value)


def test_derived_network_is_the_fixed_network_with_zero_blocks_as_identities() -> None:
    supernet = _supernet()
    genotype = supernet.derive(_weights(supernet, {"block_1": "zero", "block_3": "mb6_k5"}))
    network = create_network("proxyless", genotype, num_classes=3)
    assert not any(isinstance(m, MixedOp) for m in network.modules())
    # block_0 keeps its 4 channels (a residual, dropped by drop-path), block_1 is the identity,
    # block_2 halves the resolution (no residual), block_3 is a residual again
    blocks = network.network.blocks
    assert [(b.residual, type(b.mixed).__name__) for b in blocks] == [
        (True, "DropPathOp"), (True, "Zero"), (False, "MBConv"), (True, "DropPathOp")]
    assert blocks[3].mixed.op.body[1][0].kernel_size == (5, 5)
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(blocks[1].eval()(x), x)
    network.drop_path_prob = 0.3
    logits, aux = network(torch.randn(2, 3, 8, 8))
    assert logits.shape == (2, 3) and aux is None and network.drop_path_prob == pytest.approx(0.3)


# -- binary gates -----------------------------------------------------------------------------
def test_binary_gate_gradient_matches_the_formula() -> None:
    alpha = torch.tensor([0.3, -1.2, 0.8, 0.1, 2.0])
    gate_grad = torch.tensor([0.7, -0.4, 1.5, -2.0, 0.9])
    pairs = torch.tensor([[2, 0], [4, 3]])  # two choice points: candidates 0-2 and 3-4
    grad = binary_gate_alpha_grad(alpha, gate_grad, pairs)
    expected = torch.zeros(5)
    for pair in pairs.tolist():
        q = torch.softmax(alpha[pair], dim=0)
        for i in range(2):
            for j in range(2):
                expected[pair[i]] += gate_grad[pair[j]] * q[j] * (float(i == j) - q[i])
    torch.testing.assert_close(grad, expected)
    assert grad[1] == 0  # outside the sampled pair


def test_frozen_path_gives_its_gate_the_output_gradient_and_keeps_no_graph() -> None:
    torch.manual_seed(0)
    mixed = MixedOp(["mb3_k3", "mb6_k5", "zero"], lambda name: build_candidate(name, 4, 4, 1))
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    upstream = torch.randn(2, 4, 8, 8)
    gates = torch.tensor([1.0, 0.0, 0.0], requires_grad=True)
    out = mixed(x, SparseRow(gates, (0, 1), frozen=(1,)))
    (grad,) = torch.autograd.grad((out * upstream).sum(), gates)
    with torch.no_grad():
        expected = [(mixed.ops[i](x) * upstream).sum() for i in (0, 1)]
    torch.testing.assert_close(grad[:2], torch.stack(expected), rtol=1e-4, atol=1e-4)
    assert grad[2] == 0
    calls = _count_calls(mixed)
    mixed(x, SparseRow(gates, (0, 1), frozen=(1,)))
    assert calls == {(0, 0): [True], (0, 1): [False]}


def _saved_bytes(mixed: MixedOp, x: torch.Tensor, row: torch.Tensor | SparseRow) -> int:
    """Bytes autograd keeps for the backward pass of ``mixed(x, row)``."""
    saved = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        mixed(x, row)
    return sum(saved)


def test_two_path_memory_does_not_grow_with_the_number_of_candidates() -> None:
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    two_path, dense = [], []
    for n in (2, 4, 8):
        mixed = MixedOp([f"mb3_k{2 * k + 1}" for k in range(n)],
                        lambda name: build_candidate(name, 4, 4, 1))
        gates = torch.zeros(n).index_fill_(0, torch.tensor([0]), 1.0).requires_grad_()
        two_path.append(_saved_bytes(mixed, x, SparseRow(gates, (0, 1), frozen=(1,))))
        dense.append(_saved_bytes(mixed, x, torch.softmax(torch.zeros(n, requires_grad=True), 0)))
    assert two_path[0] == two_path[1] == two_path[2]
    assert dense[0] < dense[1] < dense[2] and two_path[2] < dense[2] / 3


def test_weight_step_runs_one_sampled_candidate_per_block() -> None:
    search = _search()
    calls = _count_calls(search.supernet)
    arch = search.training_architecture()
    search.supernet(_batch()[0], arch)
    assert all(len(row.active) == 1 and row.frozen == () for row in arch.values())
    assert all(float(row.weights[row.active[0]]) == 1.0 and not row.weights.requires_grad
               for row in arch.values())
    expected = {(k, row.active[0]): [True] for k, row in enumerate(arch.values())}
    assert calls == expected


def test_architecture_step_runs_the_active_path_and_the_other_without_autograd() -> None:
    search = _search()
    search.cost_vectors(_batch()[0])  # the FLOPs table, computed once before the first step
    calls = _count_calls(search.supernet)
    local = sample_pairs(search._flat_alpha(), search.sizes, step_generator(7, 0, 0))
    search.apply_arch_gradients = lambda grads: None
    search.architecture_step(_batch(), _batch())
    assert calls == {key: [grad] for k, (a, b) in enumerate(local.tolist())
                     for key, grad in (((k, a), True), ((k, b), False))}


def test_sampling_is_seeded_by_seed_and_step() -> None:
    alpha, sizes = torch.randn(20), [7, 7, 6]
    draw = lambda seed, step: sample_pairs(alpha, sizes, step_generator(seed, step, 0))  # noqa: E731
    assert torch.equal(draw(3, 10), draw(3, 10))
    assert any(not torch.equal(draw(3, 10), draw(3, step)) for step in range(11, 20))
    assert any(not torch.equal(draw(3, 10), draw(seed, 10)) for seed in range(4, 12))
    pairs = torch.cat([draw(0, step) for step in range(200)])
    assert (pairs[:, 0] != pairs[:, 1]).all() and (pairs[2::3] < 6).all()
    paths = torch.stack([sample_paths(torch.tensor([0.0, 3.0, 0.0]), [3],
                                      step_generator(0, step, 1)) for step in range(400)])
    frequency = float((paths == 1).float().mean())
    assert frequency == pytest.approx(float(torch.softmax(torch.tensor([0.0, 3.0, 0.0]), 0)[1]),
                                      abs=0.06)


def test_rescale_keeps_every_other_probability() -> None:
    old = torch.tensor([0.5, -0.3, 1.0, 0.2, 0.0, 0.7])
    new = old.clone()
    new[[0, 2]] += torch.tensor([0.4, -0.25])
    new[[3, 5]] += torch.tensor([-0.1, 0.3])
    pairs = torch.tensor([[0, 2], [5, 3]])
    out = rescale_pairs(new, old, pairs)
    assert torch.equal(out[[1, 4]], old[[1, 4]])
    for a, b, sl in ((0, 2, slice(0, 3)), (5, 3, slice(3, 6))):
        torch.testing.assert_close(torch.logsumexp(out[[a, b]], 0), torch.logsumexp(old[[a, b]], 0))
        torch.testing.assert_close(out[a] - out[b], new[a] - new[b])
        other = [i for i in range(sl.start, sl.stop) if i not in (a, b)]
        torch.testing.assert_close(torch.softmax(out[sl], 0)[[i - sl.start for i in other]],
                                   torch.softmax(old[sl], 0)[[i - sl.start for i in other]])


class FlatLoss(torch.nn.Module):
    """A task loss whose gradient is zero everywhere."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return 0.0 * logits.sum()


def test_latency_penalty_moves_alphas_to_cheaper_ops_when_the_task_loss_is_flat(tmp_path) -> None:
    supernet = _supernet()
    points = supernet.choice_points()
    costs = {label: {name: 0.0 if name == "zero" else 1.0 + OPS.index(name) for name in names}
             for label, names in points.items()}
    table = tmp_path / "table.json"
    CostTable(space="proxyless", device="test", unit="ms", entries=costs,
              meta={"input_size": [1, 3, 8, 8], "space_options": SMALL}).save(table)
    search = _search(supernet, table=str(table), target_ms=5.0)
    search.criterion = FlatLoss()
    captured = []
    search.apply_arch_gradients = captured.append
    search.architecture_step(_batch(), _batch())
    for grad, (label, names) in zip(captured[0], points.items()):
        cost = torch.tensor([costs[label][name] for name in names])
        descent = -grad
        assert descent.argmax() == cost.argmin() and descent.argmin() == cost.argmax()
    before = float(expected_cost(search.arch_weights(), search.costs))
    with torch.no_grad():
        for alpha, grad in zip(search.arch.parameters_list(), captured[0]):
            alpha -= 10.0 * grad
    assert float(expected_cost(search.arch_weights(), search.costs)) < before


# -- end to end -------------------------------------------------------------------------------
class AlphaProbe(pl.Callback):
    """Alphas and global step around every training batch."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        self._start = (trainer.global_step, pl_module._flat_alpha().clone())

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.steps.append((*self._start, pl_module._flat_alpha().clone()))


def _events(run_dir) -> EventAccumulator:
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return events


def test_search_on_the_darts_space_updates_only_the_sampled_pairs(tmp_path, monkeypatch) -> None:
    import oneshot.train as train_module

    probe, original = AlphaProbe(), train_module.build_trainer
    monkeypatch.setattr(train_module, "build_trainer",
                        lambda cfg, run_dir, callbacks: original(cfg, run_dir, [*callbacks, probe]))
    result = train(compose_search(f"run_dir={tmp_path}", "algorithm=proxyless"))
    document = load_genotype_file(tmp_path / "genotype.json")
    assert document.space == "darts" and document.meta["algorithm"] == "proxyless"
    assert DartsGenotype.from_dict(document.genotype) == result["genotype"]
    assert len(probe.steps) == 8  # 2 epochs of 4 batches
    module_sizes = [8] * 28
    offsets = torch.tensor([0, *module_sizes[:-1]]).cumsum(0)
    for step, before, after in probe.steps:
        pairs = sample_pairs(before, module_sizes, step_generator(0, step, 0)) + offsets[:, None]
        outside = torch.ones_like(before, dtype=torch.bool)
        outside[pairs.reshape(-1)] = False
        assert torch.equal(after[outside], before[outside])
        torch.testing.assert_close(torch.logsumexp(after[pairs], 1), torch.logsumexp(before[pairs], 1))
        assert not torch.equal(after, before)
    mflops = _events(tmp_path).Scalars("arch/expected_mflops")
    assert len(mflops) == 2 and all(event.value > 0 for event in mflops)


def test_latency_table_search_and_retrain_on_the_proxyless_space(tmp_path) -> None:
    from oneshot.latency import main as latency_main

    table = tmp_path / "latency.json"
    assert latency_main([*SMALL_OVERRIDES, f"out={table}", "image_size=8", "warmup=0",
                         "repeats=1", "threads=1"]) == 0
    search_dir = tmp_path / "search"
    base = [o for o in TINY_SEARCH if not o.startswith("space.")]
    result = train(compose_search(f"run_dir={search_dir}", *SMALL_OVERRIDES, "algorithm=proxyless",
                                  f"algorithm.latency.table={table}",
                                  "algorithm.latency.target_ms=0.5", base=base))
    document = load_genotype_file(search_dir / "genotype.json")
    assert document.space == "proxyless"
    genotype = ProxylessGenotype.from_dict(document.genotype)
    assert genotype == result["genotype"] and len(genotype.ops) == 4
    assert document.meta["params"] == sum(p.numel() for p in create_network("proxyless", genotype, num_classes=10).parameters())
    events = _events(search_dir)
    assert len(events.Scalars("arch/expected_latency_ms")) == 2
    assert {f"alpha/block_1/{name}" for name in OPS + ["zero"]} <= set(events.Tags()["scalars"])
    with_retrain = _compose_retrain([f"genotype={search_dir}", f"run_dir={tmp_path / 'retrain'}"])
    metrics = retrain(with_retrain)
    assert metrics["space"] == "proxyless" and 0.0 <= metrics["test_acc"] <= 1.0
    assert metrics["params"] == document.meta["params"]


def _compose_retrain(overrides: list[str]):
    from hydra import compose, initialize_config_module

    tiny = ["task=synthetic", "task.num_train=32", "task.num_test=16", "task.image_size=8",
            "data.batch_size=8", "data.eval_batch_size=16", "trainer.accelerator=cpu",
            "trainer.max_epochs=1", "trainer.limit_train_batches=2",
            "trainer.enable_progress_bar=false"]
    with initialize_config_module(config_module="oneshot.conf.retrain", version_base="1.3"):
        return compose("retrain", overrides=[*tiny, *overrides])


def test_latency_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="target_ms needs algorithm.latency.table"):
        _latency(target_ms=10.0)
    with pytest.raises(ConfigError, match="mul_log needs a target above 1"):
        _latency(target_mflops=0.5, form="mul_log")
    with pytest.raises(ConfigError, match="unknown algorithm.latency.form 'mul'"):
        _latency(form="mul")
    with pytest.raises(ConfigError, match="bad option for algorithm 'proxyless'"):
        create_algorithm("proxyless", _supernet(), num_classes=3, cfg={"latency": {"lambda": 1}})


def test_penalty_forms() -> None:
    search = _search(target_mflops=4.0, form="mul_log", beta=0.5)
    loss, cost = torch.tensor(2.0), torch.tensor(16.0)
    torch.testing.assert_close(search.penalized(loss, cost), loss * (4.0 / 2.0) ** 0.5)
    with pytest.raises(ConfigError, match="expected cost above 1"):
        search.penalized(loss, torch.tensor(0.5))
    search = _search(target_mflops=4.0, weight=0.2)
    torch.testing.assert_close(search.penalized(loss, cost), loss + 0.2 * (16.0 - 4.0) / 4.0)
    assert _search().penalized(loss, cost) is loss
