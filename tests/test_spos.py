"""SPOS: single sampled paths, aging evolution and random search, BatchNorm recalibration, e2e."""

from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from conftest import compose_search
from oneshot.search.algorithms import algorithm_defaults, create_algorithm
from oneshot.search.algorithms.spos import WEIGHT_STREAM, SearchConfig
from oneshot.errors import ConfigError
from oneshot.search.strategies import aging_evolution, mutate, random_search, uniform_architecture
from oneshot.search.strategies.scoring import preserved_batchnorm, recalibrate_batchnorm
from oneshot.train import train
from supernets.darts.search import DartsSupernet
from supernets.decisions import Choice
from supernets.genotype_file import load_genotype_file
from supernets.nb201.genotype import Nb201Genotype
from supernets.nb201.search import Nb201Supernet

TOY = [Choice(f"d{k}", ("a", "b", "c", "d", "e")) for k in range(6)]
TARGET = {f"d{k}": (2 * k + 1) % 5 for k in range(6)}


def toy_fitness(architecture: dict[str, int]) -> float:
    """Number of decisions equal to TARGET's: the optimum, 6, is TARGET alone."""
    return float(sum(architecture[label] == index for label, index in TARGET.items()))


def test_evolution_finds_the_known_optimum_and_beats_random_search() -> None:
    evolved = aging_evolution(TOY, toy_fitness, population=10, sample_size=3, cycles=150,
                              generator=torch.Generator().manual_seed(0))
    drawn = random_search(TOY, toy_fitness, evaluations=150,
                          generator=torch.Generator().manual_seed(0))
    assert len(evolved.history) == len(drawn.history) == 150
    assert evolved.best == TARGET and evolved.best_score == 6.0
    assert drawn.best_score < 6.0
    scores = [score for _, score in evolved.history]
    assert sum(scores[-20:]) / 20 > sum(scores[:10]) / 10 + 2  # the population improved


def test_mutation_changes_exactly_one_decision() -> None:
    decisions = [*TOY, Choice("fixed", ("only",))]
    generator = torch.Generator().manual_seed(1)
    parent = uniform_architecture(decisions, generator)
    for _ in range(50):
        child = mutate(parent, decisions, generator)
        changed = [label for label in parent if child[label] != parent[label]]
        assert len(changed) == 1 and changed[0] != "fixed"
        assert 0 <= child[changed[0]] < 5


def test_uniform_draws_cover_candidates_evenly() -> None:
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(5)
    for _ in range(400):
        for index in uniform_architecture(TOY, generator).values():
            counts[index] += 1
    torch.testing.assert_close(counts / counts.sum(), torch.full((5,), 0.2), atol=0.02, rtol=0)


def test_an_architecture_met_again_is_not_rescored() -> None:
    calls = []
    decisions = [Choice("d", ("a", "b"))]
    result = random_search(decisions, lambda arch: calls.append(arch) or arch["d"],
                           evaluations=20, generator=torch.Generator().manual_seed(0))
    assert len(result.history) == 20 and len(calls) == 2
    assert result.best == {"d": 1} and result.best_score == 1.0


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor, arch: dict) -> torch.Tensor:
        return self.bn(x).mean(dim=(2, 3))


def test_batchnorm_recalibration_is_the_exact_average_and_is_undone() -> None:
    net = _Net()
    net.bn.running_mean.fill_(5.0)
    batches = [(torch.randn(4, 2, 3, 3) + k, torch.zeros(4, dtype=torch.long)) for k in range(3)]
    with preserved_batchnorm(net):
        recalibrate_batchnorm(net, {}, batches)
        means = torch.stack([x.mean(dim=(0, 2, 3)) for x, _ in batches]).mean(0)
        torch.testing.assert_close(net.bn.running_mean, means)
    assert torch.equal(net.bn.running_mean, torch.full((2,), 5.0)) and net.bn.momentum == 0.1


@pytest.mark.parametrize("options, message", [
    ({"strategy": "bayesian"},
     "unknown algorithm.search.strategy 'bayesian'; choose one of: evolution, random"),
    ({"population": 20, "cycles": 10}, "algorithm.search.cycles must be an integer >= 20"),
    ({"eval_batches": 0}, "algorithm.search.eval_batches must be an integer >= 1"),
])
def test_bad_search_options_are_config_errors(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SearchConfig(**{**algorithm_defaults("spos")["search"], **options})


def _calls(cell: nn.Module) -> list[list[int]]:
    counts = [[0] * len(edge.ops) for edge in cell.edges]
    for e, edge in enumerate(cell.edges):
        for i, op in enumerate(edge.ops):
            op.register_forward_hook(
                lambda *_, e=e, i=i: counts[e].__setitem__(i, counts[e][i] + 1))
    return counts


def test_spos_trains_only_the_sampled_path_and_has_no_alphas() -> None:
    module = create_algorithm("spos", Nb201Supernet(channels=2, layers=1), num_classes=10, cfg={})
    assert not hasattr(module, "arch") and module.architecture_optimizer() is None
    choices = module.sample(3, WEIGHT_STREAM)
    counts = _calls(module.supernet.cells[0])
    module.supernet(torch.randn(2, 3, 8, 8), module.supernet.sampled_arch(choices))
    for e, label in enumerate(choices):
        expected = [0] * 5
        expected[choices[label]] = 1  # a sampled 'none' gives its zeros
        assert counts[e] == expected
    genotype = module.supernet.sampled_genotype(choices)
    assert genotype == Nb201Genotype(tuple(module.supernet.candidates[i] for i in choices.values()))


def test_spos_on_darts_runs_two_operations_per_node() -> None:
    module = create_algorithm("spos", DartsSupernet(channels=4, layers=3), num_classes=10, cfg={})
    counts = _calls(module.supernet.cells[0])
    choices = module.sample(0, 0)
    module.supernet(torch.randn(2, 3, 8, 8), module.supernet.sampled_arch(choices))
    normal = module.supernet.sampled_genotype(choices).normal
    pairs = sum(len(set(normal[t:t + 2])) for t in range(0, 8, 2))  # a pair picked twice runs once
    assert sum(map(sum, counts)) == pairs >= 4  # every other edge and candidate is skipped


SPOS_TINY = ("algorithm=spos", "trainer.limit_train_batches=2", "algorithm.search.population=4",
             "algorithm.search.sample_size=2", "algorithm.search.cycles=12",
             "algorithm.search.calib_batches=2", "algorithm.search.eval_batches=1")


@pytest.mark.parametrize("space, strategy", [("nb201", "evolution"), ("nb201", "random"),
                                             ("darts", "evolution")])
def test_end_to_end_spos(tmp_path, space: str, strategy: str) -> None:
    extra = ("space=nb201", "space.layers=1") if space == "nb201" else ()
    result = train(compose_search(f"run_dir={tmp_path}", *SPOS_TINY, f"space={space}", *extra,
                                  f"algorithm.search.strategy={strategy}"))
    document = load_genotype_file(tmp_path / "genotype.json")
    assert document.space == space and document.meta["algorithm"] == "spos"
    assert document.genotype == result["genotype"].to_dict()
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    searched = checkpoint["spos"]["searched"]
    supernet = Nb201Supernet(channels=4, layers=1) if space == "nb201" else \
        DartsSupernet(channels=4, layers=3)
    assert supernet.sampled_genotype(searched).to_dict() == document.genotype
    assert checkpoint["oneshot"]["genotype"] == document.genotype  # saved after the search
    assert checkpoint["global_step"] == 4  # 2 epochs x 2 weight steps, no architecture step
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert not any(tag.startswith("alpha/") for tag in tags)
    scores = [event.value for event in events.Scalars("search/score")]
    best = [event.value for event in events.Scalars("search/best_score")]
    assert len(scores) == 12 and best[-1] == max(scores) and best == sorted(best)
