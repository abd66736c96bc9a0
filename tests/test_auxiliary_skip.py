"""DARTS-'s auxiliary skip: every operation choice adds exactly ``beta * skip(x)``, ``beta``
decays from 1 to 0 over the search, and the derived network does not change."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import oneshot.train as train_module
from conftest import compose_search
from oneshot.search.algorithms import create_algorithm
from oneshot.search.algorithms.gumbel import straight_through
from oneshot.retrain import retrain
from oneshot.search.auxiliary_skip import auxiliary_skip_weight
from supernets.auxiliary import (AuxiliarySkip, add_auxiliary_skips, auxiliary_skips,
                                 set_auxiliary_skip_weight)
from supernets.choices import OpChoice
from supernets.darts.search import DartsSupernet
from supernets.errors import SpaceError
from supernets.genotype_file import load_genotype_file
from supernets.nb201.search import Nb201Supernet
from supernets.ops import FactorizedReduce
from supernets.partial import PartialChannels, channel_shuffle
from supernets.spaces import create_network, get_space
from supernets.supernet import Supernet
from test_algorithm_spaces import NETWORK_TINY, NO_SPACE, SPACE_TINY, _compose_retrain


class OneChoice(Supernet):
    """A space of one operation choice on 4 channels."""

    def __init__(self, candidates: list[str], stride: int = 1) -> None:
        super().__init__()
        self.edge = OpChoice("edge", candidates, channels=4, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.edge(x)


@pytest.mark.parametrize("candidates", [["nor_conv_3x3", "skip_connect", "avg_pool_3x3"],
                                        ["nor_conv_3x3", "avg_pool_3x3", "none"]])
def test_stride_one_choice_adds_exactly_beta_times_its_input(candidates: list[str]) -> None:
    torch.manual_seed(0)
    net = OneChoice(candidates).eval()
    arch = {"edge": torch.tensor([0.2, 0.5, 0.3])}
    x = torch.randn(2, 4, 8, 8)
    mixed = net(x, arch)
    skips = add_auxiliary_skips(net)
    assert len(skips) == 1 and isinstance(skips[0].op, torch.nn.Identity)
    torch.testing.assert_close(net(x, arch), mixed + x)  # beta starts at 1
    set_auxiliary_skip_weight(net, 0.37)
    torch.testing.assert_close(net(x, arch), mixed + 0.37 * x)
    set_auxiliary_skip_weight(net, 0.0)
    assert torch.equal(net(x, arch), mixed)


@pytest.mark.parametrize("dense", [False, True])
def test_gdas_rows_add_the_skip_to_the_chosen_candidate_and_keep_its_gradient(dense: bool) -> None:
    torch.manual_seed(0)
    net = OneChoice(["nor_conv_3x3", "skip_connect", "avg_pool_3x3"]).eval()
    x, soft = torch.randn(2, 4, 8, 8), torch.tensor([0.2, 0.5, 0.3], requires_grad=True)
    outputs = [op(x) for op in net.edge.ops]  # each candidate alone
    add_auxiliary_skips(net)
    set_auxiliary_skip_weight(net, 0.25)
    out = net(x, straight_through({"edge": soft}, dense=dense))
    torch.testing.assert_close(out, outputs[1] + 0.25 * x)  # the argmax (skip_connect) runs
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, soft, upstream)
    # d out / d weight_k: candidate k's output when it runs (dense: every k), else the
    # constant 1 of GDAS's reference code; the skip adds nothing (its weight is no alpha)
    per_weight = torch.stack([(upstream * (o if dense or k == 1 else torch.ones_like(o))).sum()
                              for k, o in enumerate(outputs)])
    torch.testing.assert_close(grad, per_weight)


def test_stride_two_edge_gets_a_fresh_factorized_reduce_as_its_skip() -> None:
    torch.manual_seed(0)
    net = DartsSupernet(channels=4, layers=3)
    add_auxiliary_skips(net)
    choices = [m for m in net.modules() if isinstance(m, OpChoice)]
    assert len(auxiliary_skips(net)) == len(choices) == 3 * 14
    reduce_edge, normal_edge = net.cells[1].edges[0], net.cells[0].edges[0]
    assert isinstance(normal_edge.auxiliary_skip.op, torch.nn.Identity)
    skip = reduce_edge.auxiliary_skip.op
    candidate = reduce_edge.ops[reduce_edge.candidates.index("skip_connect")]
    assert isinstance(skip, FactorizedReduce) and not skip.bn.affine
    assert not torch.equal(skip.conv_1.weight, candidate.conv_1.weight)  # its own weights
    row = torch.softmax(torch.randn(len(reduce_edge.candidates)), dim=-1)
    x = torch.randn(2, 8, 8, 8)
    set_auxiliary_skip_weight(net, 0.0)
    mixed = reduce_edge(x, row)
    set_auxiliary_skip_weight(net, 0.25)
    torch.testing.assert_close(reduce_edge(x, row), mixed + 0.25 * skip(x))
    assert mixed.shape == (2, 8, 4, 4)


def test_a_shape_changing_choice_without_a_skip_candidate_is_refused_in_one_line() -> None:
    net = OneChoice(["max_pool_3x3", "avg_pool_3x3"], stride=2)
    add_auxiliary_skips(net)
    with pytest.raises(SpaceError) as info:
        net(torch.randn(2, 4, 8, 8), {"edge": torch.tensor([0.5, 0.5])})
    assert str(info.value) == (
        "choice 'edge' maps (2, 4, 8, 8) to (2, 4, 4, 4), so an identity cannot be its "
        "auxiliary skip; give it a 'skip_connect' candidate that matches")
    with pytest.raises(SpaceError, match="choice 'edge' already has an auxiliary skip"):
        add_auxiliary_skips(net)


def test_a_copy_of_the_supernet_has_its_own_skips() -> None:
    net = OneChoice(["nor_conv_1x1", "skip_connect"]).eval()
    add_auxiliary_skips(net)
    twin = copy.deepcopy(net)
    set_auxiliary_skip_weight(twin, 0.0)
    x, arch = torch.randn(1, 4, 4, 4), {"edge": torch.tensor([0.5, 0.5])}
    torch.testing.assert_close(net(x, arch), twin(x, arch) + x)


def test_beta_decays_linearly_from_one_to_zero() -> None:
    assert [auxiliary_skip_weight(epoch, 4) for epoch in range(6)] == [1.0, 0.75, 0.5, 0.25,
                                                                       0.0, 0.0]


@pytest.mark.parametrize("algorithm, options", [("darts", {}), ("sdarts", {}),
                                                ("pcdarts", {"partial_channels": 1}),
                                                ("gdas", {}), ("snas", {})])
def test_off_by_default_and_on_adds_only_the_skips(algorithm: str, options: dict) -> None:
    torch.manual_seed(0)
    plain = DartsSupernet(channels=4, layers=3)
    keys = set(plain.state_dict())
    off = create_algorithm(algorithm, copy.deepcopy(plain), num_classes=10, cfg=options)
    assert not off.auxiliary_skip and auxiliary_skips(off.supernet) == []
    assert set(off.supernet.state_dict()) == keys
    on = create_algorithm(algorithm, copy.deepcopy(plain), num_classes=10,
                          cfg={**options, "auxiliary_skip": True})
    added = set(on.supernet.state_dict()) - keys
    assert keys <= set(on.supernet.state_dict()) and added
    assert all(".auxiliary_skip.op." in key for key in added)  # FactorizedReduce weights only


def test_pcdarts_edge_skips_only_the_channels_it_mixes() -> None:
    torch.manual_seed(0)
    module = create_algorithm("pcdarts", Nb201Supernet(channels=8, layers=1, partial_channels=4),
                              num_classes=10, cfg={"auxiliary_skip": True})
    edge = next(m for m in module.supernet.modules() if isinstance(m, PartialChannels))
    x, row = torch.randn(2, 8, 4, 4), torch.softmax(torch.randn(5), dim=-1)
    set_auxiliary_skip_weight(module.supernet, 0.0)
    without = edge(x, row)
    set_auxiliary_skip_weight(module.supernet, 0.5)
    added = torch.cat([0.5 * x[:, :2], torch.zeros(2, 6, 4, 4)], dim=1)  # the mixed 8 / 4
    torch.testing.assert_close(edge(x, row) - without, channel_shuffle(added, 4))


class SkipProbe(pl.Callback):
    """The auxiliary skip weights each training epoch runs with."""

    def __init__(self) -> None:
        self.betas: list[set[float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.betas.append({float(s.beta) for s in auxiliary_skips(pl_module.supernet)})


@pytest.mark.parametrize("space", ["darts", "nb201"])
@pytest.mark.parametrize("algorithm", [("algorithm=darts",), ("algorithm=sdarts",),
                                       ("algorithm=pcdarts",), ("algorithm=gdas",),
                                       ("algorithm=gdas", "algorithm.estimator=dense"),
                                       ("algorithm=snas",)])
def test_search_with_auxiliary_skip_and_its_genotype_retrains(tmp_path: Path, space: str,
                                                             algorithm: tuple[str, ...]) -> None:
    probe = SkipProbe()
    original = train_module.build_trainer
    cfg = compose_search(f"run_dir={tmp_path}", *algorithm, "algorithm.auxiliary_skip=true",
                         *SPACE_TINY[space], "trainer.limit_train_batches=1",
                         "trainer.limit_val_batches=1", base=NO_SPACE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "build_trainer",
                      lambda cfg, directory, callbacks: original(cfg, directory, [*callbacks, probe]))
        result = train_module.train(cfg)
    assert probe.betas == [{1.0}, {0.5}]  # two epochs: 1 - epoch / 2
    document = load_genotype_file(tmp_path / "genotype.json")
    assert document.meta["algorithm"] == algorithm[0].removeprefix("algorithm=")
    genotype = get_space(space).genotype_from_dict(document.genotype)
    assert genotype == result["genotype"]  # the space's usual genotype
    fixed = create_network(space, genotype, num_classes=10, **NETWORK_TINY[space])
    assert not any(isinstance(m, AuxiliarySkip) for m in fixed.modules())
    metrics = _retrain_tiny(tmp_path, space)
    assert metrics["genotype"] == str(genotype) and 0.0 <= metrics["test_acc"] <= 1.0


def _retrain_tiny(run_dir: Path, space: str) -> dict:
    """Retrain the genotype of ``run_dir`` one step at the tiny sizes of ``space``."""
    network = {"darts": ("network.channels=4", "network.layers=3", "network.auxiliary=false"),
               "nb201": ("network.channels=4", "network.layers=1")}[space]
    return retrain(_compose_retrain(f"genotype={run_dir}", f"run_dir={run_dir / 'retrain'}",
                                    *network))
