"""The NAS-Bench-201 space: string form, genotype dict, derive, search cell wiring, networks."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_module

from conftest import compose_search
from oneshot.storage.files import save_genotype_file
from oneshot.storage.genotypes import load_genotype
from oneshot.retrain import retrain
from oneshot.train import train
from supernets.choices import OpChoice
from supernets.errors import GenotypeError, SpaceError
from supernets.genotype_file import load_genotype_file
from supernets.measure import count_parameters
from supernets.nb201.genotype import Nb201Genotype, derive_nb201_genotype
from supernets.nb201.ops import NB201_OPS, ResidualReduction
from supernets.nb201.search import Nb201Supernet, SearchCell
from supernets.spaces import create_network, create_supernet, get_space

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
OPS = ("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "none", "nor_conv_1x1")
NODE3 = [["none", 0], ["none", 1], ["none", 2]]


def test_string_round_trip_and_edge_order() -> None:
    genotype = Nb201Genotype.from_text(f"  {ARCH}\n")
    assert genotype.ops == OPS
    assert genotype.to_text() == str(genotype) == ARCH
    assert genotype.nodes == ((("nor_conv_3x3", 0),),
                              (("nor_conv_3x3", 0), ("avg_pool_3x3", 1)),
                              (("skip_connect", 0), ("none", 1), ("nor_conv_1x1", 2)))


def test_dict_round_trip() -> None:
    genotype = Nb201Genotype(OPS)
    data = genotype.to_dict()
    assert data == {"nodes": [[["nor_conv_3x3", 0]], [["nor_conv_3x3", 0], ["avg_pool_3x3", 1]],
                              [["skip_connect", 0], ["none", 1], ["nor_conv_1x1", 2]]]}
    assert Nb201Genotype.from_dict(data) == genotype
    assert get_space("nb201").genotype_from_dict(data) == genotype


@pytest.mark.parametrize("text, message", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", "needs 3 '\\+'-separated nodes, got 2"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|",
     "node 3 '\\|skip_connect~0\\|none~1\\|': node 3 needs 3 input"),
    ("nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|",
     "node 1 'nor_conv_3x3~0\\|': a node must be written \\|op~0\\|"),
    ("|conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|",
     "node 1 .*'conv_3x3' is not a NAS-Bench-201 operation"),
    ("|none~0|+|none~1|none~0|+|none~0|none~1|none~2|",
     "node 2 .*entry 'none~1' must be 'op~0'"),
    ("|none~0|+|none~0|none1|+|none~0|none~1|none~2|", "entry 'none1' must be 'op~1'"),
    ("|none~0| + |none~0|none~1|+|none~0|none~1|none~2|", "node 1 '\\|none~0\\| '"),
])
def test_text_is_parsed_strictly(text: str, message: str) -> None:
    with pytest.raises(GenotypeError, match=message) as info:
        Nb201Genotype.from_text(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("data, message", [
    ({"nodes": [], "extra": 1}, "the one field 'nodes'"),
    ({"nodes": [[["none", 0]]]}, "must list 3 nodes"),
    ({"nodes": [[["none", 0]], [["none", 0]], NODE3]},
     "'nodes\\[1\\]' must hold 2"),
    ({"nodes": [[["none", 0]], [["none", 0], ["none", 2]], NODE3]},
     "'nodes\\[1\\]\\[1\\]' must read input 1"),
    ({"nodes": [[["sep_conv_3x3", 0]], [["none", 0], ["none", 1]], NODE3]},
     "edge 0: 'sep_conv_3x3' is not a NAS-Bench-201 operation"),
])
def test_dict_errors_name_the_field(data: dict, message: str) -> None:
    with pytest.raises(GenotypeError, match=message):
        Nb201Genotype.from_dict(data)


def test_derive_takes_the_argmax_of_every_edge_none_included() -> None:
    weights = {f"cell/edge_{k}": torch.full((5,), 0.1) for k in range(6)}
    weights["cell/edge_0"][NB201_OPS.index("nor_conv_3x3")] = 0.5
    weights["cell/edge_1"][NB201_OPS.index("none")] = 0.5
    weights["cell/edge_5"][NB201_OPS.index("avg_pool_3x3")] = 0.5
    genotype = derive_nb201_genotype(weights, NB201_OPS)
    # edges 2..4 are ties: the earliest candidate ('none') wins
    assert genotype.ops == ("nor_conv_3x3", "none", "none", "none", "none", "avg_pool_3x3")
    with pytest.raises(SpaceError, match="no row 'cell/edge_3'"):
        derive_nb201_genotype({k: v for k, v in weights.items() if k != "cell/edge_3"}, NB201_OPS)


def test_search_cell_sums_every_earlier_node() -> None:
    net = create_supernet("nb201", channels=2, layers=1)
    cell = net.cells[0]
    assert isinstance(cell, SearchCell)
    x = torch.randn(1, 2, 4, 4)
    skip = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])
    # node1 = x, node2 = x + node1 = 2x, node3 = x + node1 + node2 = 4x
    with net.bound({f"cell/edge_{k}": skip for k in range(6)}):
        torch.testing.assert_close(cell(x), 4 * x)
    chain = {f"cell/edge_{k}": skip if k in (0, 2, 5) else torch.eye(5)[0] for k in range(6)}
    with net.bound(chain):
        torch.testing.assert_close(cell(x), x)  # 1<-0, 2<-1, 3<-2 only


def test_supernet_layout_choice_points_and_output() -> None:
    net = create_supernet("nb201", num_classes=7, channels=4, layers=2)
    assert isinstance(net, Nb201Supernet)
    assert net.choice_points() == {f"cell/edge_{k}": list(NB201_OPS) for k in range(6)}
    kinds = [type(cell).__name__ for cell in net.cells]
    assert kinds == ["SearchCell"] * 2 + ["ResidualReduction"] + ["SearchCell"] * 2 + \
        ["ResidualReduction"] + ["SearchCell"] * 2
    arch = {label: torch.full((5,), 0.2) for label in net.choice_points()}
    assert net(torch.randn(3, 3, 8, 8), arch).shape == (3, 7)
    assert net.classifier.in_features == 16  # 4 C in the third stage


def test_bad_supernet_options_are_space_errors() -> None:
    with pytest.raises(SpaceError, match="candidates must be distinct operations"):
        Nb201Supernet(candidates=["none", "sep_conv_3x3"])
    with pytest.raises(SpaceError, match="option layers must be an integer >= 1, got 0"):
        Nb201Supernet(layers=0)


def test_residual_reduction_halves_and_widens() -> None:
    block = ResidualReduction(4, 8)
    assert block(torch.randn(2, 4, 8, 8)).shape == (2, 8, 4, 4)


@pytest.mark.parametrize("ops, params", [
    (("nor_conv_3x3",) * 6, 1_531_546),  # the benchmark's largest network (1.53 MB)
    (("skip_connect",) * 6, 73_306),     # no parameters in the cells (0.07 MB)
])
def test_derived_network_matches_the_benchmark_sizes(ops: tuple[str, ...], params: int) -> None:
    with torch.device("meta"):
        network = create_network("nb201", Nb201Genotype(ops), num_classes=10)
    assert count_parameters(network) == params


def _network(genotype: Nb201Genotype, **options) -> torch.nn.Module:
    return create_network("nb201", genotype, num_classes=options.pop("num_classes", 10), **options)


def test_derived_network_is_the_fixed_network_with_drop_path_on_non_identity_ops() -> None:
    genotype = Nb201Genotype.from_text(ARCH)
    network = _network(genotype, num_classes=5, channels=4, layers=1)
    assert not any(isinstance(m, OpChoice) for m in network.modules())
    cells = [cell for cell in network.network.cells if not isinstance(cell, ResidualReduction)]
    kinds = {"skip_connect": "Identity", "none": "Zero"}
    assert [type(edge).__name__ for edge in cells[0].edges] == [
        kinds.get(op, "DropPathOp") for op in genotype.ops]
    logits, aux = network.eval()(torch.randn(2, 3, 8, 8))
    assert logits.shape == (2, 5) and aux is None
    network.drop_path_prob = 0.5
    assert network.drop_path_prob == 0.5
    assert all(float(edge.drop_prob) == 0.5 for edge in cells[0].edges if hasattr(edge, "drop_prob"))
    with pytest.raises(SpaceError, match="drop-path probability must be in"):
        network.drop_path_prob = 1.0
    with pytest.raises(SpaceError, match="bad option for the network of space 'nb201'"):
        create_network("nb201", genotype, num_classes=10, auxiliary=True)


def test_all_none_cell_outputs_zeros() -> None:
    network = _network(Nb201Genotype(("none",) * 6), channels=2, layers=1)
    cell = network.network.cells[0]
    assert torch.equal(cell(torch.randn(1, 2, 4, 4)), torch.zeros(1, 2, 4, 4))


def _compose_retrain(overrides: list[str]):
    with initialize_config_module(config_module="oneshot.conf.retrain", version_base="1.3"):
        return compose("retrain", overrides=overrides)


def test_retrain_defaults_build_the_benchmark_network_and_protocol() -> None:
    cfg = _compose_retrain(["genotype=x", "experiment=nb201"])
    with torch.device("meta"):
        network = create_network("nb201", Nb201Genotype(("nor_conv_3x3",) * 6), num_classes=10,
                                 **cfg.network)
    assert count_parameters(network) == 1_531_546  # C = 16, N = 5
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.data.batch_size) == (0.1, 5e-4, 256)
    assert (cfg.trainer.max_epochs, cfg.data.cutout, cfg.training.drop_path) == (200, 0, 0.0)


def test_retrain_an_nb201_genotype_file(tmp_path) -> None:
    genotype = Nb201Genotype.from_text(ARCH)
    source = tmp_path / "genotype.json"
    save_genotype_file(source, space="nb201", genotype=genotype.to_dict(), meta={})
    metrics = retrain(_compose_retrain([
        f"genotype={source}", f"run_dir={tmp_path / 'run'}", "task=synthetic",
        "task.num_train=32", "task.num_test=16", "task.image_size=8", "network.channels=4",
        "network.layers=1", "data.batch_size=8", "data.eval_batch_size=16",
        "trainer.accelerator=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        "trainer.enable_progress_bar=false"]))
    assert metrics["space"] == "nb201" and metrics["genotype"] == ARCH
    assert metrics["params"] == count_parameters(_network(genotype, channels=4, layers=1))
    assert 0.0 <= metrics["test_acc"] <= 1.0
    assert load_genotype(tmp_path / "run").genotype == genotype


def test_darts_search_on_the_nb201_space(tmp_path) -> None:
    result = train(compose_search(f"run_dir={tmp_path}", "space=nb201", "space.layers=1",
                                  "trainer.max_epochs=1", "trainer.limit_train_batches=2"))
    document = load_genotype_file(tmp_path / "genotype.json")
    assert document.space == "nb201" and document.meta["algorithm"] == "darts"
    assert Nb201Genotype.from_dict(document.genotype) == result["genotype"]
    assert document.meta["params"] == count_parameters(_network(result["genotype"]))
