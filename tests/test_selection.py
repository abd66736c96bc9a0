"""Perturbation-based selection (DARTS-PT): the rule on a hand-built supernet, the seeded edge
order, end-to-end searches that write the selected genotype, resume and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import compose_search
from oneshot.errors import ConfigError
from oneshot.search.algorithms.gumbel import GdasSearch
from oneshot.search.selection import runner
from oneshot.search.selection.perturbation import decide, evaluate
from oneshot.search.selection.plan import SelectionState, plan_rounds, plan_units, project
from oneshot.train import train
from supernets import InputChoice, OpChoice, Supernet
from supernets.darts.genotype import DartsGenotype
from supernets.darts.search import DartsSupernet
from supernets.darts.topology import edge_inputs, edge_label
from supernets.genotype_file import load_genotype_file
from supernets.mixed import SparseRow
from supernets.nb201.genotype import Nb201Genotype


class Constant(nn.Module):
    """Ignores its input: a fixed push towards class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([0.1, 0.0]).expand_as(x)


class Scaled(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * x


class Picky(Supernet):
    """Logits are the mix of an edge, then one of three inputs: only ``signal`` (and input 0,
    the edge's output) carries the label, while ``decoy`` and input 1 hold the largest weights."""

    def __init__(self) -> None:
        super().__init__()
        self.op = OpChoice("cell/op", {"signal": nn.Identity(), "decoy": Constant(),
                                       "flip": Scaled(-0.1)})
        self.pick = InputChoice("cell/input", num_inputs=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.op(x)
        return self.pick([h, torch.tensor([1.0, 0.0]).expand_as(x), -0.1 * h])


def _data() -> list[tuple[torch.Tensor, torch.Tensor]]:
    labels = torch.tensor([0, 1] * 8)
    return [(nn.functional.one_hot(labels, 2).float(), labels)]


ROWS = {"cell/op": torch.tensor([0.3, 0.5, 0.2]), "cell/input": torch.tensor([0.9, 0.05, 0.05])}


def test_the_operation_whose_removal_hurts_most_is_chosen_not_the_largest_weight() -> None:
    supernet = Picky()
    units = {unit.name: unit for unit in plan_units(supernet)}
    assert [(u.kind, u.members) for u in units.values()] == [("op", (0, 1, 2)), ("inputs", (0, 1, 2))]
    assert supernet.derive(ROWS).as_dict()["cell/op"] == "decoy"  # argmax
    state = SelectionState(rounds=[])
    record = decide(supernet, units["cell/op"], state, ROWS, _data, round_index=0)
    removed = record["removed"]
    # without signal the logits no longer depend on the label: half right
    assert removed["signal"]["acc"] == 0.5 and removed["decoy"]["acc"] == 1.0
    assert record["base_acc"] == 1.0 and record["drop"] == 0.5
    assert record["chosen"] == "signal" and state.ops == {"cell/op": 0}


def test_inputs_are_removed_least_harmful_first_until_num_chosen_remain() -> None:
    supernet = Picky()
    units = {unit.name: unit for unit in plan_units(supernet)}
    rows = {**ROWS, "cell/input": torch.tensor([0.3, 0.6, 0.1])}
    state = SelectionState(rounds=[], ops={"cell/op": 0})
    record = decide(supernet, units["cell/input"], state, rows, _data, round_index=1)
    assert supernet.derive(rows).as_dict()["cell/input"] == (1,)  # argmax: the constant input
    assert record["base_acc"] == 0.5  # the constant outweighs the label
    # first the constant (removing it helps), then input 2 (without input 0 nothing is right)
    assert [step["dropped"] for step in record["steps"]] == ["1", "2"]
    assert record["kept"] == ["0"] and state.inputs == {"cell/input": [0]}


def test_evaluation_leaves_batchnorm_statistics_and_mode_alone() -> None:
    supernet = DartsSupernet(channels=4, layers=3, steps=2, multiplier=2)
    supernet.eval()
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    rows = {label: torch.full((len(names),), 1 / len(names))
            for label, names in supernet.choice_points().items()}
    batch = (torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    acc, loss = evaluate(supernet, rows, [batch])
    assert 0.0 <= acc <= 1.0 and loss > 0
    assert not supernet.training
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items())


def test_edges_are_decided_in_a_seeded_order_ops_first_one_per_cell_type() -> None:
    units = plan_units(DartsSupernet(channels=4, layers=3))
    rounds = plan_rounds(units, seed=0)
    assert rounds == plan_rounds(units, seed=0) and rounds != plan_rounds(units, seed=1)
    assert len(rounds) == 14 + 3  # 14 edges, then the nodes with 3, 4 and 5 incoming edges
    for r in rounds:
        assert sorted(name.split("/")[0] for name in r) == ["normal", "reduce"]
    assert all("edge" in name for r in rounds[:14] for name in r)
    assert sorted(name for r in rounds[14:] for name in r) == sorted(
        f"{cell}/node_{node}" for cell in ("normal", "reduce") for node in (1, 2, 3))
    normal = [r[0] for r in rounds[:14]]
    assert sorted(normal) == sorted(edge_label("normal", k) for k in range(14))
    assert normal != [edge_label("normal", k) for k in range(14)]  # not in edge order


SELECT = ("selection=perturbation", "trainer.max_epochs=1", "selection.tune_steps=1",
          "selection.eval_batches=1")


# gdas over 2 epochs: 4 steps per epoch, its temperature 10 in the first epoch and 0.1 in the last
NB201 = ("space=nb201", "algorithm=gdas", "selection=perturbation", "trainer.max_epochs=2",
         "selection.tune_epochs=0.5", "selection.eval_batches=1")


@pytest.fixture(scope="module")
def nb201_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    run_dir = tmp_path_factory.mktemp("selection") / "nb201"
    steps: list[tuple[bool, float]] = []
    original = GdasSearch.training_step

    def counted(self, batch, batch_idx):
        steps.append((isinstance(self.trainer, runner._TuningTrainer), self.tau))
        return original(self, batch, batch_idx)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GdasSearch, "training_step", counted)
        result = train(compose_search(*NB201, f"run_dir={run_dir}"))
    return {"run_dir": run_dir, "result": result, "steps": steps}


def test_fine_tuning_is_the_algorithms_own_step_as_at_the_last_epoch(nb201_run) -> None:
    search = [tau for tuning, tau in nb201_run["steps"] if not tuning]
    tuning = [tau for tuning, tau in nb201_run["steps"] if tuning]
    assert search == [10.0] * 4 + [pytest.approx(0.1)] * 4
    # 6 edges: 5 gaps between rounds of half an epoch (2 of the 4 steps) each
    assert tuning == [pytest.approx(0.1)] * 10


def test_nb201_search_writes_the_selected_genotype_and_selection_file(nb201_run) -> None:
    run_dir = nb201_run["run_dir"]
    document = load_genotype_file(run_dir / "genotype.json")
    genotype = Nb201Genotype.from_dict(document.genotype)
    assert genotype == nb201_run["result"]["genotype"]
    selection = json.loads((run_dir / "selection.json").read_text())
    assert selection["finished"] and selection["rule"] == "perturbation"
    records = selection["state"]["records"]
    assert [r["unit"] for r in records] == [name for r in selection["state"]["rounds"] for name in r]
    chosen = {r["unit"]: r["chosen"] for r in records}
    assert genotype.ops == tuple(chosen[f"cell/edge_{k}"] for k in range(6))
    for r in records:  # the chosen op is the one whose removal lowered the accuracy most
        assert r["removed"][r["chosen"]]["acc"] == min(s["acc"] for s in r["removed"].values())
    assert document.meta["selection"] == "perturbation"
    assert document.meta["accuracy_drops"] == {r["unit"]: r["drop"] for r in records}
    assert not (run_dir / runner.STATE_FILE).exists()


def test_an_interrupted_selection_resumes_from_its_last_round(nb201_run, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return decide(*args, **kwargs)

    run_dir = tmp_path / "run"
    monkeypatch.setattr(runner, "decide", failing)
    with pytest.raises(KeyboardInterrupt):
        train(compose_search(*NB201, f"run_dir={run_dir}"))
    saved = json.loads((run_dir / "selection.json").read_text())
    assert saved["state"]["done"] == 3 and not saved["finished"]
    assert (run_dir / runner.STATE_FILE).is_file()
    monkeypatch.setattr(runner, "decide", decide)
    result = train(compose_search(f"resume={run_dir}"))
    assert result["genotype"] == nb201_run["result"]["genotype"]
    resumed = json.loads((run_dir / "selection.json").read_text())
    reference = json.loads((nb201_run["run_dir"] / "selection.json").read_text())
    assert resumed["state"] == reference["state"]


def test_darts_search_selects_ops_and_two_inputs_per_node(tmp_path: Path) -> None:
    run_dir = tmp_path / "darts"
    candidates = "space.candidates=[none,max_pool_3x3,skip_connect,sep_conv_3x3]"
    result = train(compose_search("space=darts", "space.steps=2", "space.multiplier=2", candidates,
                                  *SELECT, f"run_dir={run_dir}"))
    genotype = DartsGenotype.from_dict(load_genotype_file(run_dir / "genotype.json").genotype)
    assert genotype == result["genotype"]
    state = json.loads((run_dir / "selection.json").read_text())["state"]
    assert len(state["rounds"]) == 5 + 1  # 5 edges per cell, then node 1 keeps 2 of its 3
    inputs = edge_inputs(2)
    for cell_type, cell in (("normal", genotype.normal), ("reduce", genotype.reduce)):
        kept = [(cands, j) for k, (node, j) in enumerate(inputs)
                if (label := edge_label(cell_type, k)) not in state["dropped"]
                for cands in [["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"][state["ops"][label]]]]
        assert sorted(cell) == sorted(kept)
    assert all(op != "none" for op, _ in genotype.normal + genotype.reduce)


@pytest.mark.parametrize("space, algorithm", [("nb201", "spos"), ("darts", "enas")])
def test_selection_by_perturbation_is_refused_without_alphas(space: str, algorithm: str) -> None:
    with pytest.raises(ConfigError) as err:
        train(compose_search(f"space={space}", f"algorithm={algorithm}", "selection=perturbation"))
    message = str(err.value)
    assert "\n" not in message and f"algorithm '{algorithm}'" in message and "selection=argmax" in message


def test_fine_tuning_rows_apply_the_decisions_with_zero_alpha_gradients() -> None:
    supernet = DartsSupernet(channels=4, layers=3, steps=2, multiplier=2)
    state = SelectionState(rounds=[], ops={"normal/edge_0": 4}, dropped=["normal/edge_2"])
    alpha = torch.randn(8, requires_grad=True)
    sampled = SparseRow(torch.softmax(alpha, 0), (1, 2))
    rows = {"normal/edge_0": torch.softmax(alpha, 0), "normal/edge_1": sampled,
            "normal/edge_2": torch.softmax(alpha, 0)}
    state_sampled = SelectionState(rounds=[], ops={"normal/edge_1": 5})
    dense = project(supernet, rows, state, connected=True)
    assert torch.equal(dense["normal/edge_0"].detach(), torch.eye(8)[4])  # dense stays dense
    assert torch.equal(dense["normal/edge_2"].detach(), torch.zeros(8))
    fixed = project(supernet, rows, state_sampled, connected=True)["normal/edge_1"]
    assert isinstance(fixed, SparseRow) and fixed.active == (5,)  # a sampled row runs only it
    total = dense["normal/edge_0"].sum() + dense["normal/edge_2"].sum() + fixed.weights.sum()
    (grad,) = torch.autograd.grad(total, alpha)
    assert torch.equal(grad, torch.zeros(8))
    plain = project(supernet, rows, state)  # evaluation: the fixed edge runs only its op
    assert plain["normal/edge_0"].active == (4,) and plain["normal/edge_2"].active == ()


def test_the_quick_preset_shrinks_the_selection() -> None:
    cfg = compose_search("experiment=quick", "selection=perturbation")
    assert (cfg.selection.tune_steps, cfg.selection.eval_batches) == (10, 2)
    assert compose_search("selection=perturbation").selection.tune_epochs == 5
    assert compose_search().selection.name == "argmax"


def test_selection_by_perturbation_is_refused_for_several_processes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        train(compose_search("space=nb201", "selection=perturbation", "trainer.devices=2",
                             f"run_dir={tmp_path / 'run'}"))
    assert "\n" not in str(err.value) and "runs 2" in str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()
