"""The DARTS search network: shapes, choice points, reduction positions, size, derive."""

from __future__ import annotations

import pytest
import torch

from supernets.darts.genotype import DartsGenotype
from supernets.darts.search import DartsSupernet
from supernets.errors import SpaceError
from supernets.ops import DARTS_PRIMITIVES
from supernets import spaces
from supernets.spaces import create_supernet, get_space, list_spaces

# Parameters of the reference search network (C=16, 8 cells, 10 classes). The DARTS reference
# code logs "param size = 1.930618MB" for it (model_search.Network), so the count is exact.
DARTS_REFERENCE_SEARCH_PARAMS = 1_930_618


@pytest.fixture(scope="module")
def default_net() -> DartsSupernet:
    return DartsSupernet()


def _uniform(net: DartsSupernet) -> dict[str, torch.Tensor]:
    return {label: torch.full((len(names),), 1.0 / len(names))
            for label, names in net.choice_points().items()}


def test_output_shape_of_tiny_net() -> None:
    net = DartsSupernet(num_classes=5, channels=4, layers=3)
    assert net(torch.randn(2, 3, 8, 8), _uniform(net)).shape == (2, 5)


def test_choice_points_of_default_cell(default_net: DartsSupernet) -> None:
    points = default_net.choice_points()
    assert len(points) == 28
    for cell_type in ("normal", "reduce"):
        labels = [label for label in points if label.startswith(f"{cell_type}/")]
        assert labels == [f"{cell_type}/edge_{k}" for k in range(14)]
    assert all(names == list(DARTS_PRIMITIVES) for names in points.values())


@pytest.mark.parametrize("layers, reductions", [(8, [2, 5]), (5, [1, 3]), (3, [1, 2])])
def test_reduction_cells_at_one_and_two_thirds(layers: int, reductions: list[int]) -> None:
    net = DartsSupernet(channels=2, layers=layers)
    cell_types = [cell.cell_type for cell in net.cells]
    assert [i for i, t in enumerate(cell_types) if t == "reduce"] == reductions
    assert cell_types.count("normal") == layers - 2


def test_reduction_halves_resolution_and_doubles_channels() -> None:
    net = DartsSupernet(channels=4, layers=3)
    arch = _uniform(net)
    s0 = s1 = net.stem(torch.randn(1, 3, 8, 8))
    shapes = []
    for cell in net.cells:
        with net.bound(arch):
            s0, s1 = s1, cell(s0, s1)
        shapes.append(tuple(s1.shape[1:]))
    assert shapes == [(16, 8, 8), (32, 4, 4), (64, 2, 2)]  # multiplier 4 x C, 2C, 4C


def test_parameter_count_matches_darts_reference(default_net: DartsSupernet) -> None:
    assert sum(p.numel() for p in default_net.parameters()) == DARTS_REFERENCE_SEARCH_PARAMS


def test_architecture_changes_the_output() -> None:
    torch.manual_seed(0)
    net = DartsSupernet(channels=4, layers=3).eval()
    x = torch.randn(2, 3, 8, 8)
    other = {label: torch.softmax(torch.randn(len(row)) * 3, -1)
             for label, row in _uniform(net).items()}
    assert not torch.allclose(net(x, _uniform(net)), net(x, other))


def test_derive_returns_darts_genotype_of_strongest_ops(default_net: DartsSupernet) -> None:
    weights = {}
    for label, names in default_net.choice_points().items():
        row = torch.full((len(names),), 0.01)
        row[names.index("none")] = 0.9  # 'none' never wins
        row[names.index("sep_conv_3x3" if label.startswith("normal") else "max_pool_3x3")] = 0.5
        weights[label] = row
    genotype = default_net.derive(weights)
    assert isinstance(genotype, DartsGenotype)
    assert {op for op, _ in genotype.normal} == {"sep_conv_3x3"}
    assert {op for op, _ in genotype.reduce} == {"max_pool_3x3"}
    assert genotype.normal_concat == genotype.reduce_concat == (2, 3, 4, 5)
    assert len(genotype.normal) == len(genotype.reduce) == 8


def test_candidate_subset_and_errors() -> None:
    net = DartsSupernet(channels=2, layers=3, candidates=["none", "skip_connect"])
    assert set(map(tuple, net.choice_points().values())) == {("none", "skip_connect")}
    with pytest.raises(SpaceError, match="unknown DARTS candidate.*conv_7x1_1x7"):
        DartsSupernet(candidates=["none", "conv_7x1_1x7"])
    with pytest.raises(SpaceError, match="at least 3 cells"):
        DartsSupernet(layers=2)


def test_space_registry(monkeypatch) -> None:
    assert {"darts", "nb201", "proxyless"} <= set(list_spaces())
    monkeypatch.setattr(spaces, "SPACES", {"proxyless": spaces.SPACES["proxyless"],
                                           "darts": spaces.SPACES["darts"]})
    monkeypatch.setattr(spaces, "_ENTRY_POINTS_LOADED", [True])
    assert list_spaces() == ["darts", "proxyless"]  # sorted, whatever the registration order
    monkeypatch.undo()
    assert isinstance(create_supernet("darts", channels=2, layers=3), DartsSupernet)
    with pytest.raises(SpaceError, match="unknown space 'nasbench'; choose one of: darts"):
        get_space("nasbench")
    with pytest.raises(SpaceError, match="bad option for space 'darts'.*width"):
        create_supernet("darts", width=3)
