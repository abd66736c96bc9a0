"""Proxyless networks as graphs: feature maps as nodes, each chosen block an edge labelled by op."""

from __future__ import annotations

from typing import Any

import graphviz

SKIPPED = "zero"
"""The op of a block that the search dropped: its input passes through unchanged."""


def _feature(graph: graphviz.Digraph, node: str, channels: int, reduction: int) -> None:
    graph.node(node, f"{channels} ch, 1/{reduction}" if reduction > 1 else f"{channels} ch")


def proxyless_graphs(genotype: Any) -> dict[str, graphviz.Digraph]:
    """The block list of a proxyless genotype: stem, one cluster per stage, head.

    Reads the genotype's ``stem_channels``, ``stem_stride`` (1 if absent), ``first_channels``,
    ``head_channels`` and ``stages`` (``(width, stride, ops)`` each); skipped (``zero``) blocks
    are dashed grey edges.
    Feature maps are labelled with their channels and resolution (``1/2`` = half the input's).
    """
    graph = graphviz.Digraph("blocks", graph_attr={"rankdir": "TB", "label": "blocks",
                                                   "labelloc": "t", "fontname": "Helvetica"},
                             node_attr={"shape": "box", "style": "filled,rounded",
                                        "fillcolor": "lightblue", "fontname": "Helvetica",
                                        "fontsize": "10", "height": "0.3"},
                             edge_attr={"fontname": "Helvetica", "fontsize": "10"})
    graph.node("input", "input, 3 ch", fillcolor="darkseagreen2")
    reduction = getattr(genotype, "stem_stride", 1)  # absent from older genotype objects
    _feature(graph, "stem", genotype.stem_channels, reduction)
    _feature(graph, "first", genotype.first_channels, reduction)
    graph.edge("input", "stem", label="conv_3x3" if reduction == 1 else "conv_3x3, stride 2")
    graph.edge("stem", "first", label="mb1_k3")
    previous, index = "first", 0
    for s, (width, stride, ops) in enumerate(genotype.stages):
        with graph.subgraph(name=f"cluster_stage_{s}") as stage:
            stage.attr(label=f"stage {s}: {width} ch, stride {stride}", style="rounded",
                       color="gray70", fontname="Helvetica", fontsize="10")
            reduction *= stride
            for offset in range(len(ops)):
                _feature(stage, f"b{index + offset}", width, reduction)
        for op in ops:
            node = f"b{index}"
            if op == SKIPPED:
                graph.edge(previous, node, label=f"block_{index}: skipped", style="dashed",
                           color="gray55", fontcolor="gray40")
            else:
                graph.edge(previous, node, label=f"block_{index}: {op}")
            previous, index = node, index + 1
    graph.node("head", f"{genotype.head_channels} ch, 1/{reduction}" if reduction > 1
               else f"{genotype.head_channels} ch")
    graph.node("output", "logits", fillcolor="palegoldenrod")
    graph.edge(previous, "head", label="conv_1x1")
    graph.edge("head", "output", label="pool, linear")
    return {"blocks": graph}
