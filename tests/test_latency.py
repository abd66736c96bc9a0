"""Cost tables: candidate costs at their input shapes, the JSON table, the oneshot.latency CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from oneshot.cost_table import CostTable, expected_cost, load_cost_table
from oneshot.errors import ConfigError
from oneshot.latency import main
from supernets.cost import candidate_costs, choice_inputs, latency_ms, mflops
from supernets.darts.search import DartsSupernet
from supernets.proxyless.search import ProxylessSupernet

SMALL = ("space=proxyless", "space.stem_channels=4", "space.first_channels=4", "space.widths=[4,8]",
         "space.depths=[2,2]", "space.strides=[1,2]", "space.head_channels=8")


def _proxyless() -> ProxylessSupernet:
    return ProxylessSupernet(num_classes=3, stem_channels=4, first_channels=4, widths=[4, 8],
                             depths=[2, 2], strides=[1, 2], head_channels=8)


def test_choice_inputs_are_each_blocks_input_shape() -> None:
    found = choice_inputs(_proxyless(), (1, 3, 8, 8))
    assert {label: [shape for _, shape in uses] for label, uses in found.items()} == {
        "block_0": [(1, 4, 8, 8)], "block_1": [(1, 4, 8, 8)], "block_2": [(1, 4, 8, 8)],
        "block_3": [(1, 8, 4, 4)]}


def test_shared_darts_labels_sum_over_their_cells_and_none_is_free() -> None:
    supernet = DartsSupernet(num_classes=3, channels=4, layers=3)  # normal, reduce, reduce
    costs = candidate_costs(supernet, (1, 3, 8, 8), lambda op, shape, device: float(shape[1]))
    # normal/edge_0 is used by the normal cell (4 channels); reduce/edge_0 by the two reduce
    # cells (8 and 16 channels); every 'none' costs 0
    assert costs["normal/edge_0"] == {name: 0.0 if name == "none" else 4.0
                                      for name in supernet.candidates}
    assert set(costs["reduce/edge_0"].values()) == {0.0, 24.0}


def test_flops_costs_grow_with_kernel_and_expansion_and_zero_is_free() -> None:
    costs = candidate_costs(_proxyless(), (1, 3, 8, 8), mflops)
    row = costs["block_1"]
    assert row["zero"] == 0.0
    assert row["mb3_k3"] < row["mb3_k5"] < row["mb3_k7"] < row["mb6_k7"]
    assert row["mb6_k3"] == pytest.approx(2 * row["mb3_k3"], rel=1e-6)


def test_latency_is_a_positive_median() -> None:
    assert 0.0 < latency_ms(torch.nn.Conv2d(4, 4, 3), (1, 4, 8, 8), torch.device("cpu"),
                            warmup=1, repeats=3) < 1e3


def test_table_round_trips_and_gives_cost_vectors(tmp_path) -> None:
    table = CostTable(space="proxyless", device="cpu: test", unit="ms",
                      entries={"block_0": {"mb3_k3": 0.5, "mb6_k7": 1.25},
                               "block_1": {"mb3_k3": 0.25, "zero": 0.0}},
                      meta={"repeats": 3})
    path = tmp_path / "sub" / "table.json"
    table.save(path)
    assert load_cost_table(path) == table
    assert json.loads(path.read_text())["entries"]["block_0"]["mb6_k7"] == 1.25
    vectors = table.cost_vectors({"block_0": ["mb6_k7", "mb3_k3"], "block_1": ["zero", "mb3_k3"]})
    assert {k: v.tolist() for k, v in vectors.items()} == {"block_0": [1.25, 0.5],
                                                           "block_1": [0.0, 0.25]}
    with pytest.raises(ConfigError, match="no entry for block_1/mb6_k5; measure one"):
        table.cost_vectors({"block_1": ["mb3_k3", "mb6_k5"]})


def test_expected_cost_is_the_probability_weighted_sum() -> None:
    alpha = torch.tensor([0.2, -0.5, 1.0], requires_grad=True)
    p = torch.softmax(alpha, 0)
    total = expected_cost({"a": p, "b": torch.tensor([1.0])},
                          {"a": torch.tensor([1.0, 2.0, 4.0]), "b": torch.tensor([3.0])})
    torch.testing.assert_close(total, p[0] + 2 * p[1] + 4 * p[2] + 3)
    (grad,) = torch.autograd.grad(total, alpha)
    costs = torch.tensor([1.0, 2.0, 4.0])
    torch.testing.assert_close(grad, p * (costs - (p * costs).sum()))


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    ("{", "is not JSON"),
    ('{"space": "x"}', "must be a JSON object with fields"),
    ('{"format_version": 1, "space": "x", "device": "d", "unit": "s", "entries": {}, "meta": {}}',
     "unit must be one of ms, MFLOPs"),
    ('{"format_version": 1, "space": "x", "device": "d", "unit": "ms", '
     '"entries": {"block_0": {"mb3_k3": -1}}, "meta": {}}', "non-negative number"),
])
def test_bad_tables_are_one_line_config_errors(tmp_path, content, message) -> None:
    path = tmp_path / "table.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_cost_table(path)
    assert "\n" not in str(info.value)


def test_cli_measures_every_block_and_candidate(tmp_path, capsys) -> None:
    out = tmp_path / "table.json"
    assert main([*SMALL, f"out={out}", "image_size=8", "warmup=0", "repeats=2", "threads=1"]) == 0
    table = load_cost_table(out)
    assert table.space == "proxyless" and table.unit == "ms" and table.device.startswith("cpu: ")
    assert table.meta["input_size"] == [1, 3, 8, 8] and table.meta["repeats"] == 2
    assert table.meta["space_options"]["widths"] == [4, 8]
    assert sorted(table.entries) == ["block_0", "block_1", "block_2", "block_3"]
    assert table.entries["block_1"]["zero"] == 0.0
    assert all(value > 0 for name, value in table.entries["block_1"].items() if name != "zero")
    assert f"table: {out}" in capsys.readouterr().out


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path) -> None:
    result = subprocess.run([sys.executable, "-m", "oneshot.latency", "space=nope",
                             f"out={tmp_path / 't.json'}"], capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("error: unknown config 'space/nope'; choose one of: ")
    assert "proxyless" in lines[0]
    assert main(["device=tpu", f"out={tmp_path / 't.json'}"]) == 2
    assert not (tmp_path / "t.json").exists()
