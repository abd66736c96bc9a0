"""Which function draws the genotypes of each search space: ``register_renderer(space, fn)``."""

from __future__ import annotations

from typing import Any, Callable

import graphviz

from oneshot.render.choices import generic_graphs
from oneshot.render.darts import darts_cell_graphs
from oneshot.render.nb201 import nb201_cell_graphs
from oneshot.render.proxyless import proxyless_graphs
from supernets.errors import SpaceError

Renderer = Callable[[Any], dict[str, graphviz.Digraph]]
"""Draws a genotype: one graph per cell (or block list), keyed by a short name (``normal``)."""

RENDERERS: dict[str, Renderer] = {
    "darts": darts_cell_graphs,
    "nb201": nb201_cell_graphs,
    "proxyless": proxyless_graphs,
}


def register_renderer(space: str, renderer: Renderer) -> None:
    """Draw genotypes of ``space`` with ``renderer`` (replacing any earlier one of that space)."""
    if not isinstance(space, str) or not space:
        raise SpaceError(f"a renderer needs a space name (a non-empty string), got {space!r}")
    if not callable(renderer):
        raise SpaceError(f"the renderer of space '{space}' must be callable "
                         "(genotype -> {cell name: graphviz.Digraph})")
    RENDERERS[space] = renderer


def list_renderers() -> list[str]:
    """Names of the spaces with a renderer of their own (others get the generic drawing)."""
    return sorted(RENDERERS)


def cell_graphs(space: str, genotype: Any) -> dict[str, graphviz.Digraph]:
    """The diagrams of ``genotype`` (a genotype of ``space``), one graph per cell.

    A space without a renderer gets its choices drawn as a labelled graph.
    """
    return RENDERERS.get(space, generic_graphs)(genotype)
