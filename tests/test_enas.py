"""ENAS: the controller's samples and log-probabilities, REINFORCE, weight sharing, the search."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

import oneshot.train as train_module
from conftest import TINY_SEARCH, compose_search
from oneshot.search.algorithms import create_algorithm
from oneshot.search.algorithms.controller import Controller
from oneshot.search.algorithms.enas import (CONTROLLER_STREAM, DERIVE_STREAM, WEIGHT_STREAM,
                                     EnasSearch, batch_statistics)
from oneshot.search.algorithms.sampling import step_generator
from oneshot.storage.checkpointing import load_checkpoint_file
from oneshot.training.datamodules import SearchDataModule
from oneshot.errors import ConfigError
from oneshot.storage.genotypes import load_genotype
from oneshot.train import train
from supernets.darts.genotype import DartsGenotype
from supernets.darts.search import DartsSupernet
from supernets import OpChoice, Supernet
from supernets.decisions import flat_decisions
from supernets.proxyless.genotype import ProxylessGenotype
from supernets.spaces import create_network
from tasks import load_task

ENAS = ("algorithm=enas", "algorithm.controller_steps=6", "algorithm.derive_samples=4",
        "algorithm.controller.hidden_size=16")
SKIP = "skip_connect"


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * x


class _FlatSupernet(Supernet):
    """A space with one operation choice per block and the default decisions (one per label)."""

    factors = {"block_0": (1.0, 2.0, 3.0), "block_1": (0.5, 1.0)}

    def __init__(self, *, num_classes: int = 10) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            OpChoice(label, {f"x{f}": _Scale(f) for f in factors})
            for label, factors in self.factors.items())
        self.classifier = nn.Linear(3, num_classes)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.classifier(x.mean(dim=(2, 3)))


def _darts_controller() -> tuple[DartsSupernet, Controller]:
    torch.manual_seed(0)
    supernet = DartsSupernet(channels=4, layers=3)
    return supernet, Controller(supernet.sampling_decisions(), hidden_size=16, temperature=5.0,
                                tanh_constant=2.5)


@pytest.mark.parametrize("space", ["darts", "one_decision_per_label"])
def test_samples_are_valid_architectures_with_matching_log_probs(space: str) -> None:
    if space == "darts":
        supernet, controller = _darts_controller()
    else:
        supernet = _FlatSupernet()
        controller = Controller(supernet.sampling_decisions(), hidden_size=8, temperature=5.0,
                                tanh_constant=2.5)
    decisions = flat_decisions(supernet.sampling_decisions())
    for step in range(3):
        sample = controller.sample(step_generator(0, step, CONTROLLER_STREAM))
        assert list(sample.choices) == [d.label for d in decisions]
        assert all(0 <= sample.choices[d.label] < len(d.candidates) for d in decisions)
        genotype = supernet.sampled_genotype(sample.choices)  # validated on construction
        if space == "darts":
            assert DartsGenotype.from_dict(genotype.to_dict()) == genotype
        manual = sum(torch.log(sample.probs[label][index])
                     for label, index in sample.choices.items())
        torch.testing.assert_close(sample.log_prob.detach(), manual)
        again = controller.evaluate(sample.choices)
        torch.testing.assert_close(again.log_prob, sample.log_prob)
        entropy = sum(-(p * p.log()).sum() for p in again.probs.values())
        torch.testing.assert_close(again.entropy.detach(), entropy)
        (grad,) = torch.autograd.grad(again.log_prob, [controller.start])
        assert torch.count_nonzero(grad) > 0


def test_sampling_is_seeded_and_shaped_by_temperature_and_tanh() -> None:
    _, controller = _darts_controller()
    first = controller.sample(step_generator(3, 7, WEIGHT_STREAM)).choices
    assert controller.sample(step_generator(3, 7, WEIGHT_STREAM)).choices == first
    others = [controller.sample(step_generator(3, step, WEIGHT_STREAM)).choices
              for step in range(8, 12)]
    assert any(choices != first for choices in others)
    logits = torch.tensor([-100.0, 0.0, 100.0])
    shaped = controller.shape_logits(logits)
    torch.testing.assert_close(shaped, 2.5 * torch.tanh(logits / 5.0))
    assert shaped.abs().max() <= 2.5  # every op keeps probability >= e^-5 / n


@pytest.fixture(scope="module")
def datamodule() -> SearchDataModule:
    dataset = load_task("synthetic", num_train=64, num_test=16, image_size=8)
    return SearchDataModule(dataset, batch_size=8, seed=0, eval_batch_size=16)


def _module(**options) -> EnasSearch:
    torch.manual_seed(0)
    controller = {"hidden_size": 16, **options.pop("controller", {})}
    return create_algorithm("enas", DartsSupernet(channels=4, layers=3), num_classes=10,
                            cfg={**options, "controller": controller})


def _fit(module: EnasSearch, datamodule: SearchDataModule, tmp_path: Path, *,
         batches: int = 1, callbacks=()) -> pl.Trainer:
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=batches, limit_val_batches=1,
                         accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         use_distributed_sampler=False, num_sanity_val_steps=0,
                         default_root_dir=tmp_path, callbacks=list(callbacks))
    trainer.fit(module, datamodule=datamodule)
    return trainer


def _skip_fraction(choices: dict[str, int], ops: tuple[str, ...]) -> float:
    picked = [ops[index] for label, index in choices.items() if "/op_" in label]
    return sum(op == SKIP for op in picked) / len(picked)


def _mean_skip_probability(controller: Controller, ops: tuple[str, ...]) -> float:
    values = []
    with torch.no_grad():
        for step in range(10):
            probs = controller.sample(step_generator(1, step, DERIVE_STREAM)).probs
            values += [float(p[ops.index(SKIP)]) for label, p in probs.items() if "/op_" in label]
    return sum(values) / len(values)


def test_fixed_reward_for_one_op_raises_its_probability_and_derive_keeps_the_best(
        datamodule, tmp_path) -> None:
    module = _module(controller_steps=40, derive_samples=8,
                     controller={"lr": 0.01})
    ops = module.supernet.sampling_decisions()[0].ops
    before = _mean_skip_probability(module.controller, ops)
    # The reward is the share of skip_connect among the sampled operations.
    module.accuracy = lambda batch, choices: torch.tensor(
        len(batch[1]) * _skip_fraction(choices, ops))
    trainer = _fit(module, datamodule, tmp_path)
    after = _mean_skip_probability(module.controller, ops)
    assert after > before + 0.05, (before, after)
    assert trainer.global_step == 1 + 40  # one weight step, then the controller phase
    assert int(module.controller_updates) == 40
    # Derive drew 8 samples from the trained controller and kept the best-rewarded one.
    generator = step_generator(0, 41, DERIVE_STREAM)  # derive's: one generator, 8 draws
    drawn = [module.controller.sample(generator).choices for _ in range(8)]
    assert module.derived_choices in drawn
    assert _skip_fraction(module.derived_choices, ops) == max(_skip_fraction(c, ops) for c in drawn)
    assert module.genotype() == module.supernet.sampled_genotype(module.derived_choices)


def test_weight_step_runs_only_the_sampled_ops(datamodule, tmp_path) -> None:
    module = _module(controller_steps=0)
    initial = copy.deepcopy(module.controller)
    ran: set[tuple[int, int, str]] = set()
    for c, cell in enumerate(module.supernet.cells):
        for k, edge in enumerate(cell.edges):
            for name, op in zip(edge.candidates, edge.ops):
                op.register_forward_hook(lambda *_, key=(c, k, name): ran.add(key))

    class StopAfterTrainingStep(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args) -> None:
            self.ran = set(ran)

    recorder = StopAfterTrainingStep()
    _fit(module, datamodule, tmp_path, callbacks=[recorder])
    choices = initial.sample(step_generator(0, 0, WEIGHT_STREAM)).choices
    arch = module.supernet.sampled_arch(choices)
    expected = {(c, k, edge.candidates[i]) for c, cell in enumerate(module.supernet.cells)
                for k, edge in enumerate(cell.edges) for i in arch[edge.label].active}
    assert recorder.ran == expected
    assert len(expected) < sum(len(cell.edges) * 7 for cell in module.supernet.cells) / 3


def test_batch_statistics_leave_running_statistics_untouched() -> None:
    supernet = DartsSupernet(channels=4, layers=3).eval()
    state = copy.deepcopy(supernet.state_dict())
    _, controller = _darts_controller()
    arch = supernet.sampled_arch(controller.greedy().choices)
    with batch_statistics(supernet):
        supernet(torch.randn(4, 3, 8, 8), arch)
        assert all(m.training for m in supernet.modules() if isinstance(m, nn.BatchNorm2d))
    assert not any(m.training for m in supernet.modules())
    after = supernet.state_dict()
    assert all(torch.equal(value, after[key]) for key, value in state.items())


@pytest.mark.parametrize("override, message", [
    ("algorithm.controller_steps=-1", "algorithm.controller_steps must be an integer >= 0"),
    ("algorithm.derive_samples=0", "algorithm.derive_samples must be an integer >= 1"),
    ("algorithm.controller.baseline_decay=1.0", "baseline_decay must be in [0, 1)"),
    ("+algorithm.controller.size=3", "bad option for algorithm 'enas'"),
])
def test_bad_options_are_one_line_config_errors(override: str, message: str) -> None:
    cfg = compose_search("algorithm=enas", override)
    options = train_module._options(cfg.algorithm)
    with pytest.raises(ConfigError) as info:
        create_algorithm("enas", DartsSupernet(channels=2, layers=3), num_classes=10, cfg=options)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.fixture(scope="module")
def enas_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run_dir = tmp_path_factory.mktemp("enas") / "run"
    result = train(compose_search(*ENAS, f"run_dir={run_dir}"))
    return {"run_dir": run_dir, "result": result}


def test_search_writes_a_genotype_retrain_accepts(enas_run) -> None:
    run_dir = enas_run["run_dir"]
    loaded = load_genotype(run_dir)
    assert loaded.space == "darts" and loaded.genotype == enas_run["result"]["genotype"]
    assert loaded.meta["algorithm"] == "enas" and loaded.meta["epoch"] == 1
    checkpoint = load_checkpoint_file(run_dir / "checkpoints" / "last.ckpt")
    derived = checkpoint["enas"]["derived_choices"]
    supernet = DartsSupernet(channels=4, layers=3)
    assert supernet.sampled_genotype(derived) == loaded.genotype
    assert checkpoint["oneshot"]["genotype"] == loaded.genotype.to_dict()
    assert sorted(p.name for p in (run_dir / "genotypes").iterdir()) == [
        "epoch_000.json", "epoch_001.json"]
    network = create_network("darts", loaded.genotype, num_classes=10, channels=4, layers=3)
    assert network(torch.randn(2, 3, 32, 32))[0].shape == (2, 10)


def test_checkpoint_holds_controller_baseline_and_phases(enas_run) -> None:
    checkpoint = load_checkpoint_file(enas_run["run_dir"] / "checkpoints" / "last.ckpt")
    state = checkpoint["state_dict"]
    assert {"baseline", "controller_updates", "controller.lstm.weight_hh",
            "controller.attn_score.weight"} <= set(state)
    assert int(state["controller_updates"]) == 2 * 6
    assert checkpoint["global_step"] == 2 * (4 + 6)  # 64 images: 4 batches of 8 per half
    assert not any(key.startswith("arch.") for key in state)
    assert checkpoint["hyper_parameters"]["algorithm"] == "enas"
    assert len(checkpoint["optimizer_states"]) == 2


def test_tensorboard_controller_tags(enas_run) -> None:
    events = EventAccumulator(str(enas_run["run_dir"] / "tensorboard"),
                              size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for name in ("reward", "accuracy", "baseline", "entropy", "loss", "best_accuracy"):
        assert [e.step for e in events.Scalars(f"controller/{name}")] == [0, 1]
    decisions = flat_decisions(DartsSupernet(channels=4, layers=3).sampling_decisions())
    expected = {f"controller/{d.label}/{name}" for d in decisions for name in d.candidates}
    assert expected <= scalars
    first = decisions[2]  # normal/node_0/op_0
    total = sum(events.Scalars(f"controller/{first.label}/{name}")[-1].value
                for name in first.candidates)
    assert total == pytest.approx(1.0, abs=1e-5)
    assert {"derive/best_accuracy", "derive/mean_accuracy"} <= scalars
    assert not any(tag.startswith("alpha/") for tag in scalars)
    texts = events.Tensors("controller/best_genotype/text_summary")
    assert [e.step for e in texts] == [0, 1]
    DartsGenotype.from_text(texts[-1].tensor_proto.string_val[0].decode().strip("`"))
    final = events.Tensors("genotype/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert DartsGenotype.from_text(final.strip("`")) == enas_run["result"]["genotype"]


def test_search_is_reproducible_and_resumes_exactly(enas_run, tmp_path, monkeypatch) -> None:
    class StopAtSecondEpoch(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if trainer.current_epoch == 1:
                raise RuntimeError("stopped")

    original = train_module.build_trainer
    with monkeypatch.context() as patch:
        patch.setattr(train_module, "build_trainer", lambda cfg, run_dir, callbacks: original(
            cfg, run_dir, [*callbacks, StopAtSecondEpoch()]))
        with pytest.raises(RuntimeError, match="stopped"):
            train(compose_search(*ENAS, f"run_dir={tmp_path}"))
    train(compose_search(f"resume={tmp_path}"))
    resumed = load_checkpoint_file(tmp_path / "checkpoints" / "last.ckpt")
    straight = load_checkpoint_file(enas_run["run_dir"] / "checkpoints" / "last.ckpt")
    for key, value in straight["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=0, atol=1e-6)
    assert resumed["enas"] == straight["enas"]
    documents = [json.loads((path / "genotype.json").read_text())
                 for path in (tmp_path, enas_run["run_dir"])]
    assert documents[0]["genotype"] == documents[1]["genotype"]


def test_search_on_the_proxyless_space_picks_one_op_per_block(tmp_path) -> None:
    proxyless = ("space=proxyless", "space.stem_channels=4", "space.first_channels=4",
                 "space.widths=[4,8]", "space.depths=[2,2]", "space.strides=[1,2]",
                 "space.head_channels=8")
    base = [o for o in TINY_SEARCH if not o.startswith("space.")]
    result = train(compose_search(*ENAS, *proxyless, "trainer.max_epochs=1",
                                  f"run_dir={tmp_path}", base=base))
    loaded = load_genotype(tmp_path)
    assert loaded.space == "proxyless" and loaded.genotype == result["genotype"]
    checkpoint = load_checkpoint_file(tmp_path / "checkpoints" / "last.ckpt")
    derived = checkpoint["enas"]["derived_choices"]
    assert list(derived) == ["block_0", "block_1", "block_2", "block_3"]
    names = ["mb3_k3", "mb3_k5", "mb3_k7", "mb6_k3", "mb6_k5", "mb6_k7", "zero"]
    assert loaded.genotype.ops == tuple(names[derived[f"block_{k}"]] for k in range(4))
    assert isinstance(loaded.genotype, ProxylessGenotype)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert {f"controller/block_1/{name}" for name in names} <= set(events.Tags()["scalars"])
