"""Choices that describe themselves: OpChoice, InputChoice, the Supernet base and fixed networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from supernets import ChoiceGenotype, InputChoice, OpChoice, Supernet, check_space, spaces
from supernets.choices import ChosenInputs, DropPathOp
from supernets.errors import GenotypeError, SpaceError
from supernets.mixed import SparseRow
from supernets.spaces import create_network, get_space, register_space, space_name


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.factor * x


class Cell(nn.Module):
    """Two op choices (one label shared by every cell) and an input choice."""

    def __init__(self) -> None:
        super().__init__()
        self.first = OpChoice("cell/first", {"double": Scale(2.0), "triple": Scale(3.0)})
        self.second = OpChoice("cell/second", {"double": Scale(2.0), "negate": Scale(-1.0)})
        self.pick = InputChoice("cell/input", num_inputs=3, num_chosen=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.first(x)
        return self.pick([x, a, self.second(a)])


class Net(Supernet):
    def __init__(self, *, num_classes: int = 3, cells: int = 2, width: int = 4) -> None:
        super().__init__()
        self.cells = nn.Sequential(*(Cell() for _ in range(cells)))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.cells(x))


ROWS = {"cell/first": torch.tensor([0.25, 0.75]), "cell/second": torch.tensor([1.0, 0.0]),
        "cell/input": torch.tensor([0.5, 0.0, 0.5])}


def test_choice_points_are_collected_once_per_label_in_module_order() -> None:
    net = Net()
    assert net.choice_points() == {"cell/first": ["double", "triple"],
                                   "cell/second": ["double", "negate"],
                                   "cell/input": ["0", "1", "2"]}
    assert [len(modules) for modules in net.choices().values()] == [2, 2, 2]


def test_forward_binds_the_architecture_to_every_choice() -> None:
    net = Net(cells=1)
    x = torch.randn(5, 4)
    a = 0.25 * 2 * x + 0.75 * 3 * x  # first: mix of double and triple
    expected = net.head(0.5 * x + 0.5 * (2.0 * a))  # inputs 0 and 2, second = double
    torch.testing.assert_close(net(x, ROWS), expected)


def test_sparse_rows_run_only_their_active_candidates_and_inputs() -> None:
    net = Net(cells=1)
    calls = []
    for name, op in net.choice("cell/first").named_children():
        for candidate in op:
            candidate.register_forward_hook(lambda m, *_: calls.append(m.factor))
    rows = {"cell/first": SparseRow(torch.tensor([0.0, 1.0]), (1,)),
            "cell/second": SparseRow(torch.tensor([0.0, 1.0]), (1,)),
            "cell/input": SparseRow(torch.tensor([0.0, 1.0, 1.0]), (1, 2))}
    x = torch.randn(2, 4)
    torch.testing.assert_close(net(x, rows), net.head(3 * x - 3 * x))
    assert calls == [3.0]


def test_architecture_gradient_matches_under_functional_call() -> None:
    net = Net()
    x = torch.randn(2, 4)
    alpha = torch.zeros(2, requires_grad=True)
    rows = {**ROWS, "cell/first": torch.softmax(alpha, -1)}
    direct = torch.autograd.grad(net(x, rows).sum(), alpha)[0]
    params = {k: v.detach().clone() for k, v in net.named_parameters()}
    rows = {**ROWS, "cell/first": torch.softmax(alpha, -1)}
    functional = torch.func.functional_call(net, params, (x, rows))
    torch.testing.assert_close(torch.autograd.grad(functional.sum(), alpha)[0], direct)
    assert direct.abs().sum() > 0


def test_compiled_supernet_computes_the_same() -> None:
    net = Net()
    x = torch.randn(2, 4)
    compiled = torch.compile(net, backend="eager", fullgraph=False)
    torch.testing.assert_close(compiled(x, ROWS), net(x, ROWS))
    other = {**ROWS, "cell/first": torch.tensor([1.0, 0.0])}
    torch.testing.assert_close(compiled(x, other), net(x, other))


def test_misuse_is_a_one_line_error() -> None:
    net = Net()
    with pytest.raises(SpaceError, match=r"^Net has choices; call it as supernet\(x, arch\)"):
        net(torch.randn(1, 4))
    with pytest.raises(SpaceError, match="called outside a supernet forward"):
        net.cells[0].first(torch.randn(1, 4))
    with pytest.raises(SpaceError, match="the architecture has no row 'cell/second'"):
        net(torch.randn(1, 4), {"cell/first": ROWS["cell/first"]})


def test_one_label_with_different_candidates_is_refused() -> None:
    class Clash(Net):
        def __init__(self) -> None:
            super().__init__()
            self.extra = OpChoice("cell/first", {"double": Scale(2.0)})

    with pytest.raises(SpaceError, match=r"^choice label 'cell/first' is used twice with "
                                         r"different candidates .* at extra\); give each"):
        Clash().choice_points()


def test_default_derive_is_argmax_per_op_and_top_k_per_input() -> None:
    genotype = Net().derive({"cell/first": torch.tensor([0.1, 0.9]),
                             "cell/second": torch.tensor([0.6, 0.4]),
                             "cell/input": torch.tensor([0.5, 0.1, 0.4])})
    assert genotype.as_dict() == {"cell/first": "triple", "cell/second": "double",
                                  "cell/input": (0, 2)}
    assert str(genotype) == "cell/first=triple cell/second=double cell/input=0,2"
    assert ChoiceGenotype.from_text(str(genotype)) == genotype
    assert ChoiceGenotype.from_dict(genotype.to_dict()) == genotype
    assert genotype.to_dict() == {"choices": {"cell/first": "triple", "cell/second": "double",
                                              "cell/input": [0, 2]}}


def test_sampling_an_input_choice_picks_a_set_of_distinct_inputs() -> None:
    net = Net()
    decisions = {d.label: d.candidates for d in net.sampling_decisions()}
    assert decisions["cell/input"] == ("0+1", "0+2", "1+2")
    sample = {"cell/first": 1, "cell/second": 0, "cell/input": 2}
    arch = net.sampled_arch(sample)
    assert arch["cell/input"].active == (1, 2) and arch["cell/input"].weights.tolist() == [0, 1, 1]
    assert arch["cell/first"].active == (1,)
    assert net.sampled_genotype(sample).as_dict() == {
        "cell/first": "triple", "cell/second": "double", "cell/input": (1, 2)}


def test_fixed_network_keeps_only_the_chosen_candidates() -> None:
    genotype = ChoiceGenotype({"cell/first": "triple", "cell/second": "negate",
                               "cell/input": (0, 2)})
    fixed = Net.fixed_network(genotype)
    assert not any(isinstance(m, (OpChoice, InputChoice)) for m in fixed.modules())
    cell = fixed.cells[0]
    assert (cell.first.factor, cell.second.factor) == (3.0, -1.0)
    assert isinstance(cell.pick, ChosenInputs) and cell.pick.indices == (0, 2)
    x = torch.randn(2, 4)
    torch.testing.assert_close(cell(x), x - 3 * x)
    assert fixed(x).shape == (2, 3)


@pytest.mark.parametrize("choices, message", [
    ({"cell/first": "triple", "cell/second": "negate"}, "has no choice for 'cell/input'"),
    ({"cell/first": "quadruple", "cell/second": "negate", "cell/input": (0, 1)},
     "'cell/first' is 'quadruple'; choose one of: double, triple"),
    ({"cell/first": "triple", "cell/second": "negate", "cell/input": (0, 0)},
     "'cell/input' must be 2 distinct inputs in 0..2"),
    ({"cell/first": "triple", "cell/second": "negate", "cell/input": (0, 1), "x/y": "z"},
     "has choice\\(s\\) x/y that this search space does not have"),
])
def test_a_genotype_that_does_not_fit_is_a_one_line_error(choices, message) -> None:
    with pytest.raises(GenotypeError, match=message) as info:
        Net.fixed_network(ChoiceGenotype(choices))
    assert "\n" not in str(info.value)


class Residual(Supernet):
    """Depth with ``none``: each block is ``x + choice(x)``; choosing ``none`` removes it."""

    def __init__(self, *, num_classes: int = 2, blocks: int = 3) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            OpChoice(f"block_{i}", ["none", "nor_conv_3x3"], channels=2, drop_path=True)
            for i in range(blocks))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


def test_depth_is_a_none_candidate_in_a_residual_block() -> None:
    genotype = ChoiceGenotype({"block_0": "nor_conv_3x3", "block_1": "none", "block_2": "none"})
    network = create_network(Residual, genotype, num_classes=2)
    blocks = network.network.blocks
    assert [type(b).__name__ for b in blocks] == ["DropPathOp", "Zero", "Zero"]
    assert blocks[0].op[2].affine  # registry ops get affine BatchNorm in the fixed network
    x = torch.randn(1, 2, 4, 4)
    torch.testing.assert_close(blocks[1](x) + x, x)
    network.drop_path_prob = 0.25
    assert float(blocks[0].drop_prob) == 0.25 and isinstance(blocks[0], DropPathOp)
    searched = Residual()
    assert not searched.choice("block_0").ops[1][2].affine  # and plain BatchNorm while searching


def test_register_space_by_name(monkeypatch) -> None:
    monkeypatch.setattr(spaces, "SPACES", dict(spaces.SPACES))
    register_space("residual_test", Residual)
    assert get_space("residual_test").supernet is Residual and space_name(Residual) == "residual_test"
    with pytest.raises(SpaceError, match="space name 'residual_test' is taken by .*Residual"):
        register_space("residual_test", Net)
    with pytest.raises(SpaceError, match="must be a subclass of supernets.Supernet"):
        register_space("plain", nn.Linear)
    assert get_space("test_choices.Net").supernet is Net  # a class path, as Hydra's _target_


def test_check_space_passes_a_good_space_and_names_the_failing_step() -> None:
    assert check_space(Residual, input_size=(2, 2, 4, 4), num_classes=2).as_dict()["block_0"] \
        in ("none", "nor_conv_3x3")

    class Detached(Residual):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for block in self.blocks:
                x = x + block(x).detach()
            return self.head(x)

    with pytest.raises(SpaceError, match=r"no architecture weight got a gradient"):
        check_space(Detached, input_size=(2, 2, 4, 4), num_classes=2)


def test_supernets_copy_and_pickle_with_their_choices() -> None:
    import copy
    import pickle

    net = Net()
    x = torch.randn(2, 4)
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        torch.testing.assert_close(clone(x, ROWS), net(x, ROWS))
        assert clone.choice("cell/first") is not net.choice("cell/first")
