"""Cell diagrams: DARTS cells as dot source, the renderer registry, drawing with and without dot."""

from __future__ import annotations

import os
import re
import stat
from types import SimpleNamespace

import graphviz
import pytest

from oneshot.errors import ConfigError
from oneshot.render import (GraphvizMissingError, cell_graphs, dot_available, draw, graph_pixels,
                            list_renderers, register_renderer, write_diagrams)
from oneshot.render import registry
from supernets.choice_genotype import ChoiceGenotype
from supernets.darts.genotype import DartsGenotype
from supernets.darts.published import get_published
from supernets.errors import SpaceError
from supernets.nb201.genotype import Nb201Genotype

EDGE = re.compile(r"^\s*(\w+) -> (\w+)(?: \[(.*)\])?$")
NODE = re.compile(r'^\s*(\w+) \[label=("[^"]*"|\S+)')
needs_dot = pytest.mark.skipif(not dot_available(), reason="Graphviz's dot is not installed")


def _edges(source: str) -> list[tuple[str, str, str | None]]:
    """``(tail, head, op label or None)`` for every edge statement of a dot source."""
    found = []
    for line in source.splitlines():
        match = EDGE.match(line)
        if match:
            label = re.search(r'label=("[^"]*"|\w+)', match.group(3) or "")
            found.append((match.group(1), match.group(2),
                          label.group(1).strip('"') if label else None))
    return found


def _nodes(source: str) -> dict[str, str]:
    return {m.group(1): m.group(2).strip('"') for m in map(NODE.match, source.splitlines()) if m}


@pytest.fixture
def darts_v2() -> DartsGenotype:
    return get_published("DARTS_V2")[0]


@pytest.fixture
def no_dot(monkeypatch, tmp_path) -> None:
    """A PATH on which Graphviz's dot program cannot be found."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not dot_available()


def test_darts_v2_normal_cell_nodes_and_edges(darts_v2) -> None:
    graphs = cell_graphs("darts", darts_v2)
    assert list(graphs) == ["normal", "reduce"]
    source = graphs["normal"].source
    assert source.startswith("digraph normal {")
    assert _nodes(source) == {"in0": "c_{k-2}", "in1": "c_{k-1}", "n0": "0", "n1": "1", "n2": "2",
                              "n3": "3", "out": "c_{k}"}
    assert _edges(source) == [
        ("in0", "n0", "sep_conv_3x3"), ("in1", "n0", "sep_conv_3x3"),
        ("in0", "n1", "sep_conv_3x3"), ("in1", "n1", "sep_conv_3x3"),
        ("in1", "n2", "sep_conv_3x3"), ("in0", "n2", "skip_connect"),
        ("in0", "n3", "skip_connect"), ("n0", "n3", "dil_conv_3x3"),
        ("n0", "out", None), ("n1", "out", None), ("n2", "out", None), ("n3", "out", None)]


def test_darts_v2_reduce_cell_edges(darts_v2) -> None:
    edges = _edges(cell_graphs("darts", darts_v2)["reduce"].source)
    assert edges[:8] == [
        ("in0", "n0", "max_pool_3x3"), ("in1", "n0", "max_pool_3x3"),
        ("n0", "n1", "skip_connect"), ("in1", "n1", "max_pool_3x3"),
        ("in0", "n2", "max_pool_3x3"), ("n0", "n2", "skip_connect"),
        ("n0", "n3", "skip_connect"), ("in1", "n3", "max_pool_3x3")]
    assert [e for e in edges[8:]] == [(f"n{i}", "out", None) for i in range(4)]


def test_partial_concat_and_fewer_steps() -> None:
    genotype = DartsGenotype(normal=[("skip_connect", 0), ("sep_conv_5x5", 1),
                                     ("avg_pool_3x3", 2), ("dil_conv_5x5", 0)],
                             normal_concat=[3], reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1),
                                                        ("skip_connect", 2), ("skip_connect", 1)],
                             reduce_concat=[2, 3])
    graphs = cell_graphs("darts", genotype)
    assert set(_nodes(graphs["normal"].source)) == {"in0", "in1", "n0", "n1", "out"}
    assert _edges(graphs["normal"].source) == [
        ("in0", "n0", "skip_connect"), ("in1", "n0", "sep_conv_5x5"),
        ("n0", "n1", "avg_pool_3x3"), ("in0", "n1", "dil_conv_5x5"), ("n1", "out", None)]
    assert [e for e in _edges(graphs["reduce"].source) if e[1] == "out"] == [
        ("n0", "out", None), ("n1", "out", None)]


def test_space_without_renderer_draws_its_choices() -> None:
    genotype = ChoiceGenotype((("cell/op_0", "conv"), ("cell/input_1", (0, 2)), ("head/op", "pool")))
    source = cell_graphs("nope", genotype)["choices"].source
    assert 'c0 [label="cell/op_0\\nconv"]' in source
    assert 'c1 [label="cell/input_1\\ninputs 0, 2"]' in source
    assert "c0 -> c1" in source and "c1 -> c2" in source
    assert "label=cell" in source and "label=head" in source
    with pytest.raises(SpaceError, match=r"^no drawing for a object: register a renderer"):
        cell_graphs("nope", object())


def test_register_renderer_plugs_in_a_space(monkeypatch) -> None:
    monkeypatch.setattr(registry, "RENDERERS", dict(registry.RENDERERS))

    def chain(genotype: list[str]) -> dict[str, graphviz.Digraph]:
        graph = graphviz.Digraph("chain")
        for i, op in enumerate(genotype):
            graph.edge(f"s{i}", f"s{i + 1}", label=op)
        return {"chain": graph}

    register_renderer("chain", chain)
    assert "chain" in list_renderers() and "darts" in list_renderers()
    assert _edges(cell_graphs("chain", ["conv", "skip"])["chain"].source) == [
        ("s0", "s1", "conv"), ("s1", "s2", "skip")]
    with pytest.raises(SpaceError, match="must be callable"):
        register_renderer("chain", "not a function")
    with pytest.raises(SpaceError, match="non-empty string"):
        register_renderer("", chain)


def test_dot_format_writes_the_source_without_the_program(darts_v2, no_dot, tmp_path) -> None:
    graphs = cell_graphs("darts", darts_v2)
    paths = write_diagrams(graphs, tmp_path / "out", "dot", prefix="v2_")
    assert [p.name for p in paths] == ["v2_normal.dot", "v2_reduce.dot"]
    assert paths[0].read_text() == graphs["normal"].source
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_missing_dot_says_how_to_install(darts_v2, no_dot, tmp_path, fmt) -> None:
    graphs = cell_graphs("darts", darts_v2)
    with pytest.raises(GraphvizMissingError) as caught:
        write_diagrams(graphs, tmp_path, fmt)
    message = str(caught.value)
    assert "`dot` program was not found" in message and "\n" not in message
    assert "apt-get install graphviz" in message and "pip package alone" in message
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(GraphvizMissingError):
        graph_pixels(graphs["normal"])


def test_graphviz_executable_not_found_becomes_the_install_message(darts_v2, monkeypatch) -> None:
    graph = cell_graphs("darts", darts_v2)["normal"]

    def missing(*args, **kwargs):
        raise graphviz.ExecutableNotFound(["dot"])

    monkeypatch.setattr(graphviz.Digraph, "pipe", missing)
    with pytest.raises(GraphvizMissingError, match="apt-get install graphviz"):
        draw(graph, "svg")


def test_unknown_formats_are_config_errors(darts_v2, tmp_path) -> None:
    graphs = cell_graphs("darts", darts_v2)
    with pytest.raises(ConfigError, match="unknown diagram format 'pdf'; choose one of: dot, svg"):
        write_diagrams(graphs, tmp_path, "pdf")
    with pytest.raises(ConfigError, match="unknown image format 'dot'"):
        draw(graphs["normal"], "dot")


@needs_dot
def test_svg_and_png_drawn_by_dot(darts_v2, tmp_path) -> None:
    graphs = cell_graphs("darts", darts_v2)
    svg, png = (write_diagrams(graphs, tmp_path, fmt) for fmt in ("svg", "png"))
    text = svg[0].read_text()
    assert "<svg" in text and "sep_conv_3x3" in text and "c_{k&#45;2}" in text
    assert png[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = graph_pixels(graphs["reduce"])
    assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.dtype.name == "uint8"
    assert pixels.shape[1] > pixels.shape[0] > 50  # drawn left to right


def test_proxyless_block_list_edges_and_clusters() -> None:
    genotype = SimpleNamespace(stem_channels=8, first_channels=4, head_channels=32, stages=(
        (6, 1, ("mb3_k3", "zero")), (10, 2, ("mb6_k5",))))
    source = cell_graphs("proxyless", genotype)["blocks"].source
    assert _edges(source) == [
        ("input", "stem", "conv_3x3"), ("stem", "first", "mb1_k3"),
        ("first", "b0", "block_0: mb3_k3"), ("b0", "b1", "block_1: skipped"),
        ("b1", "b2", "block_2: mb6_k5"), ("b2", "head", "conv_1x1"),
        ("head", "output", "pool, linear")]
    assert _nodes(source) == {"input": "input, 3 ch", "stem": "8 ch", "first": "4 ch",
                              "b0": "6 ch", "b1": "6 ch", "b2": "10 ch, 1/2",
                              "head": "32 ch, 1/2", "output": "logits"}
    assert 'label="stage 1: 10 ch, stride 2"' in source
    skipped = next(line for line in source.splitlines() if "b0 -> b1" in line)
    assert "style=dashed" in skipped


def test_nb201_cell_edges_leave_out_none() -> None:
    genotype = Nb201Genotype.from_text(
        "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|")
    graphs = cell_graphs("nb201", genotype)
    assert list(graphs) == ["cell"]
    source = graphs["cell"].source
    assert _nodes(source) == {"n0": "0 (input)", "n1": "1", "n2": "2", "n3": "3 (output)"}
    assert _edges(source) == [("n0", "n1", "nor_conv_3x3"), ("n1", "n2", "avg_pool_3x3"),
                              ("n0", "n3", "skip_connect"), ("n2", "n3", "nor_conv_1x1")]


def test_written_files_get_the_umask_permissions(darts_v2, tmp_path) -> None:
    previous = os.umask(0o022)
    try:
        paths = write_diagrams(cell_graphs("darts", darts_v2), tmp_path, "dot")
    finally:
        os.umask(previous)
    assert [stat.S_IMODE(p.stat().st_mode) for p in paths] == [0o644, 0o644]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["normal.dot", "reduce.dot"]
