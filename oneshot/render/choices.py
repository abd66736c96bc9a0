"""The drawing of any space without a renderer of its own: its choices as a labelled graph.

One cluster per label prefix (the part before the first ``/``, e.g. a cell type), one node per
choice in the space's order holding ``label: chosen``, joined in that order.
"""

from __future__ import annotations

from typing import Any

import graphviz

from supernets.choice_genotype import ChoiceGenotype
from supernets.errors import SpaceError


def choice_graphs(choices: dict[str, Any]) -> dict[str, graphviz.Digraph]:
    """``label -> chosen`` as one graph, keyed ``choices``."""
    graph = graphviz.Digraph("choices", graph_attr={"rankdir": "LR", "label": "choices",
                                                    "labelloc": "t", "fontname": "Helvetica"},
                             node_attr={"style": "filled,rounded", "shape": "box",
                                        "fontname": "Helvetica", "fillcolor": "lightblue"})
    groups: dict[str, list[str]] = {}
    for label in choices:
        groups.setdefault(label.split("/", 1)[0], []).append(label)
    previous, count = None, 0
    for g, (group, labels) in enumerate(groups.items()):
        with graph.subgraph(name=f"cluster_{g}") as cluster:
            cluster.attr(label=group, style="rounded", color="gray60")
            for label in labels:
                value = choices[label]
                shown = value if isinstance(value, str) else \
                    "inputs " + ", ".join(str(i) for i in value)
                node, count = f"c{count}", count + 1
                cluster.node(node, f"{label}\\n{shown}")
                if previous is not None:
                    graph.edge(previous, node)
                previous = node
    return {"choices": graph}


def generic_graphs(genotype: Any) -> dict[str, graphviz.Digraph]:
    """The choices graph of a :class:`ChoiceGenotype`."""
    if not isinstance(genotype, ChoiceGenotype):
        raise SpaceError(f"no drawing for a {type(genotype).__name__}: register a renderer "
                         "for its space with oneshot.render.register_renderer(space, fn)")
    return choice_graphs(genotype.as_dict())
