"""Cost tables: candidate costs at their input shapes, the JSON table, the oneshot.latency CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import TINY_SEARCH, compose_search
from oneshot.tables.cost import CostTable, expected_cost, load_cost_table
from oneshot.errors import ConfigError
from oneshot.latency import main
from oneshot.train import train
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


# -- a search refuses a table measured for another space, other options or another image size --
FAST = ("warmup=0", "repeats=1", "threads=1")
NO_SPACE = tuple(o for o in TINY_SEARCH if not o.startswith("space."))
QUICK_SEARCH = ("experiment=quick_proxyless", "task.subset=null", "data.batch_size=8",
                "data.eval_batch_size=16", "trainer.max_epochs=1", "trainer.limit_train_batches=1")


def _measure(path, *overrides: str):
    assert main([*overrides, f"out={path}", *FAST]) == 0
    return path


def _refusal(cfg) -> str:
    with pytest.raises(ConfigError) as info:
        train(cfg)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_experiment_preset_measures_the_space_that_search_uses(tmp_path) -> None:
    table = _measure(tmp_path / "quick.json", "experiment=quick_proxyless", "image_size=8")
    search = compose_search(f"run_dir={tmp_path / 'run'}", *QUICK_SEARCH,
                            f"algorithm.latency.table={table}", base=NO_SPACE)
    options = OmegaConf.to_container(search.space, resolve=True)
    assert load_cost_table(table).meta["space_options"] == {k: v for k, v in options.items()
                                                           if k != "name"}
    assert options["widths"] == [16, 32, 64]  # the preset's, not the space's defaults
    train(search)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    (expected,) = events.Scalars("arch/expected_latency_ms")
    rows = load_cost_table(table).entries.values()
    assert sum(min(r.values()) for r in rows) <= expected.value <= sum(max(r.values()) for r in rows)


def test_table_of_other_space_options_is_refused_before_any_data(tmp_path) -> None:
    table = _measure(tmp_path / "small.json", *SMALL, "image_size=8")
    no_task = [o for o in NO_SPACE if not o.startswith("task")]
    message = _refusal(compose_search(
        *QUICK_SEARCH, f"algorithm.latency.table={table}", "task=cifar10",
        f"task.root={tmp_path / 'no-data'}", "task.download=false", base=no_task))
    assert message.startswith(f"cost table '{table}' was measured for other proxyless space "
                              "options: depths (table [2, 2], search [2, 2, 2]); ")
    assert "head_channels (table 8, search 256)" in message
    assert "widths (table [4, 8], search [16, 32, 64])" in message
    assert message.endswith("re-measure it with the search's space options: `python -m "
                            "oneshot.latency experiment=NAME out=PATH` with the search's "
                            "experiment=, plus the same space.* overrides")


def test_table_of_another_space_or_without_options_is_refused(tmp_path) -> None:
    measured = load_cost_table(_measure(tmp_path / "small.json", *SMALL, "image_size=8"))
    search = (f"run_dir={tmp_path / 'run'}", *SMALL, "algorithm=proxyless")
    other_space = tmp_path / "darts.json"
    CostTable("darts", measured.device, "ms", measured.entries, measured.meta).save(other_space)
    assert _refusal(compose_search(*search, f"algorithm.latency.table={other_space}",
                                   base=NO_SPACE)).startswith(
        f"cost table '{other_space}' was measured for space 'darts', not 'proxyless'; re-measure")
    old = tmp_path / "old.json"  # a table written before the options were recorded
    CostTable("proxyless", measured.device, "ms", measured.entries,
              {k: v for k, v in measured.meta.items() if k != "space_options"}).save(old)
    assert _refusal(compose_search(*search, f"algorithm.latency.table={old}",
                                   base=NO_SPACE)).startswith(
        f"cost table '{old}' does not record the space options it was measured for (an older "
        "table); re-measure it")


def test_table_of_another_image_size_is_refused(tmp_path) -> None:
    table = _measure(tmp_path / "big.json", *SMALL, "image_size=16")
    message = _refusal(compose_search(f"run_dir={tmp_path / 'run'}", *SMALL, "algorithm=proxyless",
                                      f"algorithm.latency.table={table}", base=NO_SPACE))
    assert message.startswith(f"cost table '{table}' was measured on 3x16x16 images, the "
                              "search's are 3x8x8; re-measure it with `python -m oneshot.latency "
                              "image_size=8 ...`")
