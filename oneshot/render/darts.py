"""DARTS cells as graphs: the two cell inputs, the intermediate nodes, edges labelled by op."""

from __future__ import annotations

from typing import Sequence

import graphviz

from supernets.darts.genotype import DartsGenotype

OP_COLORS = {
    "skip_connect": "gray35",
    "max_pool_3x3": "darkorange3",
    "avg_pool_3x3": "darkorange3",
    "sep_conv_3x3": "royalblue3",
    "sep_conv_5x5": "royalblue3",
    "dil_conv_3x3": "forestgreen",
    "dil_conv_5x5": "forestgreen",
}
"""Edge colour per op family (pooling, skip, separable, dilated); other ops are drawn black."""


def darts_node_id(state: int) -> str:
    """Graph node id of cell state ``state``: ``in0``/``in1`` for the inputs, ``n<i>`` otherwise."""
    return f"in{state}" if state < 2 else f"n{state - 2}"


def darts_cell_graph(cell: Sequence[tuple[str, int]], concat: Sequence[int], *,
                     name: str) -> graphviz.Digraph:
    """One DARTS cell: inputs ``c_{k-2}``, ``c_{k-1}``, nodes ``0..steps-1``, output ``c_{k}``.

    Entry ``t`` of ``cell`` is the edge ``(op, input)`` into node ``t // 2``; the nodes listed in
    ``concat`` feed the output (their concatenation).
    """
    graph = graphviz.Digraph(name, graph_attr={"rankdir": "LR", "label": f"{name} cell",
                                               "labelloc": "t", "fontname": "Helvetica"},
                             node_attr={"style": "filled,rounded", "shape": "box",
                                        "fontname": "Helvetica", "penwidth": "1.5"},
                             edge_attr={"fontname": "Helvetica", "fontsize": "11"})
    graph.node(darts_node_id(0), "c_{k-2}", fillcolor="darkseagreen2")
    graph.node(darts_node_id(1), "c_{k-1}", fillcolor="darkseagreen2")
    steps = len(cell) // 2
    for node in range(steps):
        graph.node(darts_node_id(node + 2), str(node), fillcolor="lightblue")
    graph.node("out", "c_{k}", fillcolor="palegoldenrod")
    for t, (op, state) in enumerate(cell):
        color = OP_COLORS.get(op, "black")
        graph.edge(darts_node_id(state), darts_node_id(t // 2 + 2), label=op, color=color,
                   fontcolor=color)
    for state in concat:
        graph.edge(darts_node_id(state), "out", color="gray60")
    return graph


def darts_cell_graphs(genotype: DartsGenotype) -> dict[str, graphviz.Digraph]:
    """The normal and the reduction cell of a DARTS genotype."""
    return {"normal": darts_cell_graph(genotype.normal, genotype.normal_concat, name="normal"),
            "reduce": darts_cell_graph(genotype.reduce, genotype.reduce_concat, name="reduce")}
