"""benchmarks/gdas_diagnosis.py: its two measurements run, and the estimator's gradient is the
softmax gradient of GDAS's straight-through weights."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from supernets.mixed import SparseRow
from supernets.spaces import create_supernet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gdas_diagnosis  # noqa: E402


def test_cells_are_read_from_their_text_by_edge_label():
    ops = gdas_diagnosis.cell_ops(gdas_diagnosis.CELLS["optimum"])
    assert ops == {"cell/edge_0": "nor_conv_3x3", "cell/edge_1": "nor_conv_3x3",
                   "cell/edge_2": "nor_conv_3x3", "cell/edge_3": "skip_connect",
                   "cell/edge_4": "nor_conv_3x3", "cell/edge_5": "nor_conv_3x3"}


def test_expected_gradient_is_the_softmax_gradient_of_one_path():
    torch.manual_seed(0)
    net = create_supernet("nb201", num_classes=3, channels=4, layers=1).train()
    batch = (torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,)))
    expected, gain = gdas_diagnosis.expected_gdas_gradient(net, [batch], 1, torch.Generator().manual_seed(1))
    # the same path by hand: one-hot weights, the others' weights added as constants
    points = net.choice_points()
    names = gdas_diagnosis.random_ops(points, torch.Generator().manual_seed(1))
    alphas = {label: torch.zeros(len(c), requires_grad=True) for label, c in points.items()}
    rows = {}
    for label, c in points.items():
        soft = torch.softmax(alphas[label], 0)
        hard = torch.nn.functional.one_hot(torch.tensor(c.index(names[label])), len(c)).float()
        rows[label] = hard - soft.detach() + soft
    sparse = {label: SparseRow(rows[label], (c.index(names[label]),), constants=True)
              for label, c in points.items()}
    loss = torch.nn.functional.cross_entropy(net(batch[0], sparse), batch[1])
    grads = torch.autograd.grad(loss, list(alphas.values()))
    torch.testing.assert_close(expected, torch.stack(grads), rtol=1e-5, atol=1e-7)
    # the chosen candidate's weight gradient, by hand: d loss / d g at g = 1 for g * op(x)
    label = "cell/edge_0"
    index = points[label].index(names[label])
    weight = torch.ones((), requires_grad=True)
    rows = gdas_diagnosis.path_rows(points, names)
    rows[label] = rows[label]._replace(weights=rows[label].weights * weight)
    by_hand, = torch.autograd.grad(torch.nn.functional.cross_entropy(net(batch[0], rows), batch[1]), weight)
    torch.testing.assert_close(gain[0, index], by_hand, rtol=1e-5, atol=1e-7)
    assert gain[0].count_nonzero() <= 1  # one path: only the chosen candidate has a gain gradient
    torch.testing.assert_close(expected.sum(1), torch.zeros(len(points)), rtol=0, atol=1e-7)


def test_dense_expected_gradient_is_the_full_mix_gradient():
    torch.manual_seed(0)
    net = create_supernet("nb201", num_classes=3, channels=4, layers=1).train()
    batch = (torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,)))
    expected, _ = gdas_diagnosis.expected_gdas_gradient(net, [batch], 1, torch.Generator().manual_seed(1),
                                                        "dense")
    points = net.choice_points()
    names = gdas_diagnosis.random_ops(points, torch.Generator().manual_seed(1))
    alphas = {label: torch.zeros(len(c), requires_grad=True) for label, c in points.items()}
    rows = {}
    for label, c in points.items():  # every candidate under autograd, weighted by the one-hot
        soft = torch.softmax(alphas[label], 0)
        hard = torch.nn.functional.one_hot(torch.tensor(c.index(names[label])), len(c)).float()
        rows[label] = hard - soft.detach() + soft
    loss = torch.nn.functional.cross_entropy(net(batch[0], rows), batch[1])
    # float32 sums in another order (the edges fold their BatchNorms into the mix)
    torch.testing.assert_close(expected, torch.stack(torch.autograd.grad(loss, list(alphas.values()))),
                               rtol=1e-5, atol=1e-6)


def test_both_measurements_print_their_tables(tmp_path, capsys):
    gdas_diagnosis.main(["paths", "--task", "synthetic", "--subset", "256", "--channels", "4",
                         "--layers", "1", "--steps", "4", "--report", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].strip() for line in lines] == ["optimum", "all nor_conv_3x3",
                                                              "uniform paths"]
    assert all(0.0 <= float(v) <= 1.0 for line in lines for v in line.split()[-2:])
    torch.manual_seed(0)
    net = create_supernet("nb201", num_classes=10, channels=4, layers=1)
    (tmp_path / "checkpoints").mkdir()
    torch.save({"state_dict": {f"supernet.{k}": v for k, v in net.state_dict().items()}},
               tmp_path / "checkpoints" / "last.ckpt")
    OmegaConf.save({"seed": 0, "task": {"name": "synthetic", "num_train": 256, "num_test": 64,
                                        "subset": None},
                    "space": {"name": "nb201", "channels": 4, "layers": 1}},
                   tmp_path / "config.yaml")
    gdas_diagnosis.main(["estimator", str(tmp_path), "--batches", "3"])
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out if line.strip().startswith("cell/edge_")]
    assert len(rows) == 12  # the expected gradient and the gain gradient, per edge
    assert all(len(r) == 7 and r[-1] in net.choice_points()[r[0]] for r in rows[:6])
    assert all(len(r) == 6 for r in rows[6:])
    assert sum(line.startswith("supernet accuracy") for line in out) == 4
    assert not any(line.startswith("with the auxiliary skips") for line in out)
    gdas_diagnosis.main(["estimator", str(tmp_path), "--batches", "3", "--skip-beta", "0.5"])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "with the auxiliary skips (DARTS-) at weight 0.5"
    assert sum(line.strip().startswith("cell/edge_") for line in out) == 12
    config = OmegaConf.load(tmp_path / "config.yaml")
    config.algorithm, config.trainer = {"auxiliary_skip": True}, {"max_epochs": 4}
    OmegaConf.save(config, tmp_path / "config.yaml")
    gdas_diagnosis.main(["estimator", str(tmp_path), "--batches", "1"])
    assert capsys.readouterr().out.splitlines()[0] == \
        "with the auxiliary skips (DARTS-) at weight 0.25"  # the last of 4 epochs: 1 - 3 / 4


def test_a_dir_that_is_not_an_nb201_search_is_one_line(tmp_path) -> None:
    with pytest.raises(SystemExit, match="is not a search run dir"):
        gdas_diagnosis.main(["estimator", str(tmp_path)])
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    OmegaConf.save({"seed": 0, "task": {"name": "synthetic"}, "space": {"name": "darts"}},
                   tmp_path / "config.yaml")
    with pytest.raises(SystemExit, match="searched space=darts; this measurement needs a space=nb201"):
        gdas_diagnosis.main(["estimator", str(tmp_path)])
    for bad in ("-1", "nan"):
        with pytest.raises(SystemExit, match=r"^error: --skip-beta must be a number >= 0 .*got"):
            gdas_diagnosis.main(["estimator", str(tmp_path), "--skip-beta", bad])
