"""GDAS and SNAS: Gumbel samples, straight-through gradient, temperature, sparse forward, e2e."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import compose_search
from oneshot.search.algorithms import create_algorithm, supported_spaces
from oneshot.search.algorithms.gumbel import gumbel_softmax, straight_through, temperature
from oneshot.search.algorithms.sampling import step_generator
from oneshot.errors import ConfigError
from oneshot.train import train
from oneshot.training.datamodules import SearchDataModule
from supernets.genotype_file import load_genotype_file
from supernets.mixed import SparseRow
from supernets.nb201.genotype import Nb201Genotype
from supernets.nb201.search import Nb201Supernet
from supernets.spaces import get_space
from tasks import load_task


def test_hard_sample_is_one_hot_with_the_straight_through_gradient() -> None:
    alpha = torch.tensor([0.3, -1.0, 2.0, 0.5], requires_grad=True)
    tau = 0.7
    soft = gumbel_softmax({"e": alpha}, tau, step_generator(3, 5, 0))["e"]
    row = straight_through({"e": soft})["e"]
    index = int(soft.argmax())
    assert isinstance(row, SparseRow) and row.active == (index,)
    expected_value = torch.zeros(4)
    expected_value[index] = 1.0
    torch.testing.assert_close(row.weights.detach(), expected_value)
    (grad,) = torch.autograd.grad(row.weights[index], alpha)
    # d s_i / d alpha_k of s = softmax((log_softmax(alpha) + g) / tau): the soft row's gradient
    s, p = soft.detach(), torch.softmax(alpha.detach(), -1)
    ds_dz = s[index] * (torch.eye(4)[index] - s)
    expected = (ds_dz.unsqueeze(1) * (torch.eye(4) - p.unsqueeze(0)) / tau).sum(0)
    torch.testing.assert_close(grad, expected)


def test_dense_estimator_gives_every_weight_its_own_outputs_gradient() -> None:
    """estimator=dense: the value of the one-path forward, the gradient of the full
    straight-through Gumbel-softmax mix sum_i h_i * op_i(x) with every candidate computed."""
    torch.manual_seed(0)
    net = Nb201Supernet(channels=3, layers=1, num_classes=4).train()
    gdas = create_algorithm("gdas", net, num_classes=4, cfg={"estimator": "dense"})
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    rows = gdas.sample(0)
    chosen = {label: next(i for i in row.active if i not in row.frozen) for label, row in rows.items()}
    assert all(row.active == tuple(range(5)) and len(row.frozen) == 4 for row in rows.values())
    with torch.no_grad():
        one_path = net(x, {label: SparseRow(row.weights.detach(), (chosen[label],))
                           for label, row in rows.items()})
        dense = net(x, rows)
    torch.testing.assert_close(dense, one_path)
    # the same weights as dense tensor rows: every candidate computed with autograd
    alphas = gdas.arch.parameters_list()
    loss = torch.nn.functional.cross_entropy(net(x, rows), y)
    ours = torch.autograd.grad(loss, alphas)
    rows = gdas.sample(0)  # the same draw: seeded by (seed, step, stream)
    mixed = torch.nn.functional.cross_entropy(net(x, {k: r.weights for k, r in rows.items()}), y)
    full = torch.autograd.grad(mixed, alphas)
    for a, b in zip(ours, full):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)
    reference = create_algorithm("gdas", net, num_classes=4, cfg={})
    reference.arch.load_state_dict(gdas.arch.state_dict())
    ref_rows = reference.sample(0)
    assert {k: r.active for k, r in ref_rows.items()} == {k: (i,) for k, i in chosen.items()}
    ref = torch.autograd.grad(torch.nn.functional.cross_entropy(net(x, ref_rows), y),
                              reference.arch.parameters_list())
    assert not all(torch.allclose(a, b) for a, b in zip(ref, ours))  # a different estimator


def test_gumbel_argmax_follows_softmax_alpha() -> None:
    alpha = torch.log(torch.tensor([0.1, 0.2, 0.7]))
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(3000):
        counts[gumbel_softmax({"e": alpha}, 1.0, generator)["e"].argmax()] += 1
    torch.testing.assert_close(counts / 3000, torch.tensor([0.1, 0.2, 0.7]), atol=0.03, rtol=0)


def test_samples_depend_only_on_seed_and_step() -> None:
    alpha = {"e": torch.zeros(5)}

    def draw(seed: int, step: int, stream: int) -> torch.Tensor:
        return gumbel_softmax(alpha, 1.0, step_generator(seed, step, stream))["e"]

    assert torch.equal(draw(0, 7, 0), draw(0, 7, 0))
    assert not torch.equal(draw(0, 7, 0), draw(0, 8, 0))
    assert not torch.equal(draw(0, 7, 0), draw(0, 7, 1))
    assert not torch.equal(draw(0, 7, 0), draw(1, 7, 0))


def test_temperature_schedules() -> None:
    linear = [temperature(e, 5, tau_max=10, tau_min=0.1, schedule="linear") for e in range(5)]
    assert linear == pytest.approx([10.0, 7.525, 5.05, 2.575, 0.1])
    geometric = [temperature(e, 3, tau_max=10, tau_min=0.1, schedule="exponential")
                 for e in range(3)]
    assert geometric == pytest.approx([10.0, 1.0, 0.1])
    assert temperature(0, 1, tau_max=10, tau_min=0.1, schedule="linear") == 10.0


@pytest.mark.parametrize("options, message", [
    ({"tau_max": 0.1, "tau_min": 1.0}, "0 < tau_min <= tau_max"),
    ({"tau_schedule": "cosine"},
     "unknown tau_schedule 'cosine'; choose one of: linear, exponential"),
    ({"temperature": 1.0}, "bad option for algorithm 'gdas'"),
    ({"warmup_epochs": -1}, "algorithm.warmup_epochs must be an integer >= 0, got -1"),
    ({"estimator": "exact"}, "unknown algorithm.estimator 'exact'; choose one of: reference, dense"),
])
def test_bad_options_are_config_errors(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_algorithm("gdas", Nb201Supernet(channels=2, layers=1), num_classes=10, cfg=options)


def _calls(net: Nb201Supernet) -> list[list[int]]:
    """Forward calls of every candidate of the first cell's edges."""
    counts = [[0] * len(edge.ops) for edge in net.cells[0].edges]
    for e, edge in enumerate(net.cells[0].edges):
        for i, op in enumerate(edge.ops):
            op.register_forward_hook(
                lambda *_, e=e, i=i: counts[e].__setitem__(i, counts[e][i] + 1))
    return counts


def test_gdas_runs_only_the_sampled_candidate_and_snas_runs_all() -> None:
    net = Nb201Supernet(channels=2, layers=1)
    gdas = create_algorithm("gdas", net, num_classes=10, cfg={})
    counts = _calls(net)
    rows = gdas.sample(0)
    net(torch.randn(2, 3, 8, 8), rows)
    for e, label in enumerate(gdas.arch.candidates):
        (index,) = rows[label].active
        expected = [0] * 5
        expected[index] = 1  # a sampled 'none' gives its zeros
        assert counts[e] == expected
    snas = create_algorithm("snas", Nb201Supernet(channels=2, layers=1), num_classes=10, cfg={})
    counts = _calls(snas.supernet)
    rows = snas.sample(0)
    assert all(torch.allclose(row.sum(), torch.tensor(1.0)) for row in rows.values())
    snas.supernet(torch.randn(2, 3, 8, 8), rows)
    assert counts == [[0, 1, 1, 1, 1]] * 6  # 'none' contributes zeros without running


def test_eval_architecture_is_the_argmax_path() -> None:
    gdas = create_algorithm("gdas", Nb201Supernet(channels=2, layers=1), num_classes=10, cfg={})
    with torch.no_grad():
        for k, alpha in enumerate(gdas.arch.parameters_list()):
            alpha[k % 5] = 1.0
    rows = gdas.eval_architecture()
    assert [row.active for row in rows.values()] == [(k % 5,) for k in range(6)]
    expected = tuple(gdas.supernet.candidates[k % 5] for k in range(6))
    assert gdas.genotype() == Nb201Genotype(expected)


class _Snapshots(pl.Callback):
    """The alphas and the supernet's weights at the start and after every training epoch."""

    def __init__(self) -> None:
        self.alphas: list[list[torch.Tensor]] = []
        self.weights: list[list[torch.Tensor]] = []

    def _take(self, module: pl.LightningModule) -> None:
        self.alphas.append([p.detach().clone() for p in module.arch.parameters_list()])
        self.weights.append([p.detach().clone() for p in module.supernet.parameters()])

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._take(module)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._take(module)


def test_gdas_warmup_epochs_train_only_the_weights(tmp_path) -> None:
    dataset = load_task("synthetic", num_train=32, num_test=16, image_size=8)
    datamodule = SearchDataModule(dataset, batch_size=8, seed=0, eval_batch_size=16)
    torch.manual_seed(0)
    gdas = create_algorithm("gdas", Nb201Supernet(channels=4, layers=1), num_classes=10,
                            cfg={"warmup_epochs": 1, "arch_optimizer": {"lr": 0.01}})
    assert gdas.hparams["warmup_epochs"] == 1
    snapshots = _Snapshots()
    pl.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0, accelerator="cpu",
               logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, callbacks=[snapshots],
               default_root_dir=tmp_path).fit(gdas, datamodule)
    start, warm, searched = snapshots.alphas
    assert all(torch.equal(a, b) for a, b in zip(start, warm))  # the warm-up epoch: alphas fixed
    assert all(not torch.equal(a, b) for a, b in zip(warm, searched))  # then every edge moves
    assert any(not torch.equal(a, b) for a, b in zip(*snapshots.weights[:2]))  # weights trained
    assert gdas.global_step == 2 + 2 * 2  # weight steps alone, then architecture + weight steps


TWO_EPOCHS = ("trainer.max_epochs=2", "trainer.limit_train_batches=2")
NB201_TINY = ("space=nb201", "space.layers=1", *TWO_EPOCHS)


@pytest.mark.parametrize("algorithm, space, options", [
    *[(a, s, ()) for a in ("gdas", "snas") for s in supported_spaces(a)],
    *[("gdas", s, ("algorithm.estimator=dense",)) for s in supported_spaces("gdas")]])
def test_end_to_end_search(tmp_path, algorithm: str, space: str, options: tuple[str, ...]) -> None:
    extra = NB201_TINY if space == "nb201" else TWO_EPOCHS
    result = train(compose_search(f"run_dir={tmp_path}", f"algorithm={algorithm}", *extra, *options))
    document = load_genotype_file(tmp_path / "genotype.json")
    assert document.space == space and document.meta["algorithm"] == algorithm
    assert get_space(space).genotype_from_dict(document.genotype) == result["genotype"]
    epoch_files = sorted(p.name for p in (tmp_path / "genotypes").iterdir())
    assert epoch_files == ["epoch_000.json", "epoch_001.json"]
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    first = "cell/edge_0" if space == "nb201" else "normal/edge_0"
    assert any(tag.startswith(f"alpha/{first}/") for tag in tags)
    taus = [event.value for event in events.Scalars("train/tau")]
    top = 10.0 if algorithm == "gdas" else 1.0
    assert taus == pytest.approx([top, 0.1 if algorithm == "gdas" else 0.03])
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu",
                            weights_only=True)
    assert checkpoint["hyper_parameters"]["algorithm"] == algorithm
    if options:
        assert checkpoint["hyper_parameters"]["estimator"] == "dense"
    assert checkpoint["global_step"] == 8  # 2 epochs x 2 batches x (arch step + weight step)


def test_same_seed_same_alphas(tmp_path) -> None:
    def alphas(run: str) -> list[torch.Tensor]:
        train(compose_search(f"run_dir={tmp_path / run}", "algorithm=gdas", *NB201_TINY))
        state = torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)
        return [v for k, v in sorted(state["state_dict"].items()) if k.startswith("arch.")]
    first, second = alphas("a"), alphas("b")
    assert all(torch.equal(a, b) for a, b in zip(first, second))
