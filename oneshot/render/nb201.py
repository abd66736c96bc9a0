"""NAS-Bench-201 cells as graphs: nodes 0 (input) to 3 (output), one edge per chosen op."""

from __future__ import annotations

import graphviz

from supernets.nb201.genotype import Nb201Genotype
from supernets.nb201.topology import CELL, NODES

OP_COLORS = {
    "skip_connect": "gray35",
    "avg_pool_3x3": "darkorange3",
    "nor_conv_1x1": "forestgreen",
    "nor_conv_3x3": "royalblue3",
}
"""Edge colour per op; ``none`` edges are left out (the edge is absent)."""


def nb201_cell_graph(genotype: Nb201Genotype) -> graphviz.Digraph:
    """The cell: node 0 is its input, node 3 its output; ``none`` edges are not drawn."""
    graph = graphviz.Digraph(CELL, graph_attr={"rankdir": "LR", "label": CELL,
                                               "labelloc": "t", "fontname": "Helvetica"},
                             node_attr={"style": "filled,rounded", "shape": "box",
                                        "fontname": "Helvetica", "penwidth": "1.5"},
                             edge_attr={"fontname": "Helvetica", "fontsize": "11"})
    last = NODES - 1
    for node in range(NODES):
        name = {0: "0 (input)", last: f"{last} (output)"}.get(node, str(node))
        color = {0: "darkseagreen2", last: "palegoldenrod"}.get(node, "lightblue")
        graph.node(f"n{node}", name, fillcolor=color)
    for node, pairs in enumerate(genotype.nodes, start=1):
        for op, j in pairs:
            if op != "none":
                color = OP_COLORS.get(op, "black")
                graph.edge(f"n{j}", f"n{node}", label=op, color=color, fontcolor=color)
    return graph


def nb201_cell_graphs(genotype: Nb201Genotype) -> dict[str, graphviz.Digraph]:
    """The one cell of a NAS-Bench-201 genotype, keyed ``cell``."""
    return {CELL: nb201_cell_graph(genotype)}
