"""PC-DARTS: the partial-channel edge, edge normalization (betas), its derive rule, the warm-up,
and that a search's genotype is the ordinary one (no partial channels in its fixed network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from conftest import compose_search
from oneshot.errors import ConfigError
from oneshot.search.algorithms import create_algorithm
from oneshot.search.algorithms.pcdarts import pcdarts_space_options
from oneshot.search.edge_normalization import EdgeNormalizedParameters
from oneshot.storage.torchfile import load_weights_only
from oneshot.train import train
from oneshot.training.datamodules import SearchDataModule
from supernets import OpChoice, Supernet
from supernets.darts.search import DartsSupernet
from supernets.errors import SpaceError
from supernets.nb201.genotype import Nb201Genotype
from supernets.nb201.search import Nb201Supernet
from supernets.partial import PartialChannels, channel_shuffle, partial_edge
from tasks import load_task

CANDIDATES = ["nor_conv_3x3", "avg_pool_3x3", "skip_connect"]


def _edge(channels: int, k: int, stride: int = 1) -> nn.Module:
    return partial_edge(lambda c: OpChoice("e", CANDIDATES, channels=c, stride=stride),
                        channels, k, stride)


def test_channel_shuffle_interleaves_the_groups() -> None:
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_edge_mixes_one_kth_and_bypasses_the_rest(stride: int) -> None:
    torch.manual_seed(0)
    c, k = 8, 4
    edge = _edge(c, k, stride)
    assert isinstance(edge, PartialChannels)
    convs = [m for m in edge.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.in_channels == c // k for m in convs)
    x = torch.randn(2, c, 6, 6)
    row = torch.tensor([0.5, 0.2, 0.3]) * 0.4            # softmax row times an edge weight 0.4
    out = edge(x, row)
    # concatenated channel j (mixed 0..1, bypass 2..7) lands on (j % 2) * k + j // 2
    position = [(j % (c // k)) * k + j // (c // k) for j in range(c)]
    bypass = x[:, c // k:] if stride == 1 else nn.functional.max_pool2d(x[:, c // k:], 2)
    torch.testing.assert_close(out[:, position[c // k:]], 0.4 * bypass)
    mixed = edge.choice(x[:, :c // k], row)
    torch.testing.assert_close(out[:, position[:c // k]], mixed)
    changed = x.clone()
    changed[:, c // k:] += 1.0                            # the candidates never see these
    torch.testing.assert_close(edge(changed, row)[:, position[:c // k]], mixed)


def test_spaces_build_candidates_on_one_kth_and_fixed_networks_in_full() -> None:
    def choice_widths(net: nn.Module) -> set[int]:
        return {m.num_features for choice in net.modules() if isinstance(choice, OpChoice)
                for m in choice.modules() if isinstance(m, nn.BatchNorm2d)}

    assert choice_widths(DartsSupernet(channels=8, layers=3)) == {8, 16, 32}
    assert choice_widths(DartsSupernet(channels=8, layers=3, partial_channels=4)) == {2, 4, 8}
    assert choice_widths(Nb201Supernet(channels=8, layers=1, partial_channels=2)) == {4, 8, 16}
    genotype = Nb201Genotype.from_text(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")
    plain = Nb201Supernet.fixed_network(genotype, channels=8, layers=1)
    partial = Nb201Supernet.fixed_network(genotype, channels=8, layers=1, partial_channels=4)
    assert not any(isinstance(m, PartialChannels) for m in partial.modules())
    assert [p.shape for p in partial.parameters()] == [p.shape for p in plain.parameters()]


def test_partial_channels_must_divide_the_channels() -> None:
    with pytest.raises(SpaceError, match="^partial_channels=4 must divide every edge's channels, "
                                         "but an edge has 6; choose channels divisible by 4$"):
        Nb201Supernet(channels=6, layers=1, partial_channels=4)
    with pytest.raises(SpaceError, match="partial_channels must be an integer >= 1"):
        DartsSupernet(channels=8, layers=3, partial_channels=0)


def _tiny_nb201() -> tuple[Nb201Supernet, EdgeNormalizedParameters]:
    torch.manual_seed(0)
    supernet = Nb201Supernet(channels=4, layers=1, partial_channels=2).double()
    arch = EdgeNormalizedParameters(supernet.choice_points(), supernet.node_edges(),
                                    init_std=0.5).double()
    return supernet, arch


def test_gradients_reach_alphas_and_betas_and_match_finite_differences() -> None:
    supernet, arch = _tiny_nb201()
    x, y = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 3])

    def loss() -> torch.Tensor:
        return nn.functional.cross_entropy(supernet(x, arch.softmax()), y)

    params = arch.parameters_list()
    assert len(params) == 6 + 3                           # six edges' alphas, three nodes' betas
    grads = torch.autograd.grad(loss(), params)
    for name, grad in zip([*arch.candidates, *arch.node_edges], grads):
        # a node with one incoming edge weights it by softmax([beta]) = 1: no gradient
        single = name in arch.node_edges and len(arch.node_edges[name]) == 1
        assert bool((grad == 0).all()) == single, name
    eps = 1e-6
    with torch.no_grad():
        for param, grad in zip(params, grads):
            for i in range(param.numel()):
                param.view(-1)[i] += eps
                up = loss()
                param.view(-1)[i] -= 2 * eps
                down = loss()
                param.view(-1)[i] += eps
                assert float((up - down) / (2 * eps)) == pytest.approx(float(grad.view(-1)[i]),
                                                                       rel=1e-5, abs=1e-9)


def test_derive_ranks_a_nodes_inputs_by_alpha_times_beta() -> None:
    torch.manual_seed(0)
    module = create_algorithm("pcdarts", DartsSupernet(channels=4, layers=3), num_classes=10,
                              cfg={"partial_channels": 1})
    sep = module.arch.candidates["normal/edge_2"].index("sep_conv_3x3")
    with torch.no_grad():
        for p in module.arch.parameters_list():
            p.zero_()
        for edge, logit in (("normal/edge_2", 3.0), ("normal/edge_3", 2.5), ("normal/edge_4", 2.0)):
            module.arch.alphas[edge][sep] = logit         # node 1 reads inputs 0, 1, 2
    assert [j for _, j in module.genotype().normal[2:4]] == [0, 1]
    with torch.no_grad():
        module.arch.betas["normal/node_1"].copy_(torch.tensor([-2.0, 0.0, 2.0]))
    assert [j for _, j in module.genotype().normal[2:4]] == [2, 1]


def test_nb201_derive_with_betas_is_the_argmax_of_each_edge() -> None:
    supernet, arch = _tiny_nb201()
    with torch.no_grad():
        weighted = arch.softmax()
        plain = {label: torch.softmax(alpha, -1) for label, alpha in arch.alphas.items()}
    assert supernet.derive(weighted) == supernet.derive(plain)


def test_warmup_epochs_freeze_the_architecture(tmp_path: Path) -> None:
    dataset = load_task("synthetic", num_train=32, num_test=16, image_size=8)
    datamodule = SearchDataModule(dataset, batch_size=8, seed=0, eval_batch_size=16)
    moved = {}
    for warmup in (1, 0):
        torch.manual_seed(0)
        module = create_algorithm("pcdarts", Nb201Supernet(channels=4, layers=1, partial_channels=4),
                                  num_classes=10, cfg={"warmup_epochs": warmup})
        before = [p.detach().clone() for p in module.arch.parameters_list()]
        pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, accelerator="cpu",
                   logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path).fit(module, datamodule)
        moved[warmup] = [not torch.equal(a, b) for a, b in zip(before, module.arch.parameters_list())]
    assert not any(moved[1])
    assert all(moved[0])


class _Net(Supernet):
    def __init__(self, *, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 4, 1)
        self.op = OpChoice("op", ["skip_connect", "avg_pool_3x3"], channels=4)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.op(self.stem(x)))


def test_a_space_without_partial_channels_or_nodes_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^algorithm.partial_channels=4 needs a space built with "
                                          r"partial channels, and _Net takes no partial_channels "
                                          r"option: .* set algorithm.partial_channels=1$"):
        pcdarts_space_options(_Net, {"partial_channels": 4})
    assert pcdarts_space_options(_Net, {"partial_channels": 1}) == {}
    with pytest.raises(ConfigError, match="^edge normalization needs the edges into each node, "
                                          "and this space does not declare them: define "
                                          "Supernet.node_edges"):
        create_algorithm("pcdarts", _Net(), num_classes=10, cfg={"partial_channels": 1})
    module = create_algorithm("pcdarts", _Net(), num_classes=10,
                              cfg={"partial_channels": 1, "edge_normalization": False})
    assert len(module.arch.parameters_list()) == 1
    with pytest.raises(ConfigError, match="^algorithm.partial_channels=4 but the supernet's edges "
                                          r"mix 1/K of their channels for K in \[1\]"):
        create_algorithm("pcdarts", DartsSupernet(channels=4, layers=3), num_classes=10, cfg={})


def test_search_keeps_partial_channels_out_of_the_genotype_and_checkpoints_betas(tmp_path) -> None:
    result = train(compose_search(f"run_dir={tmp_path}", "algorithm=pcdarts", "space=nb201",
                                  "space.layers=1", "algorithm.warmup_epochs=1",
                                  "trainer.limit_train_batches=1"))
    document = json.loads((tmp_path / "genotype.json").read_text())
    assert "partial_channels" not in document["meta"]["space_options"]
    assert document["genotype"] == result["genotype"].to_dict()
    state = load_weights_only(tmp_path / "checkpoints" / "last.ckpt")["state_dict"]
    assert {k for k in state if k.startswith("arch.betas.")} == {
        "arch.betas.cell/node_1", "arch.betas.cell/node_2", "arch.betas.cell/node_3"}
    assert state["arch.betas.cell/node_3"].shape == (3,)
