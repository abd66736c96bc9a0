"""How the edges of a DARTS cell are numbered, shared by the search and derived networks."""

from __future__ import annotations

CELL_TYPES: tuple[str, str] = ("normal", "reduce")


def edge_inputs(steps: int = 4) -> list[tuple[int, int]]:
    """``(node, input)`` per edge in DARTS order: node ``i`` reads inputs ``0 .. i + 1``.

    Inputs 0 and 1 are the cell inputs; input ``j >= 2`` is intermediate node ``j - 2``.
    """
    return [(node, j) for node in range(steps) for j in range(node + 2)]


def edge_label(cell_type: str, k: int) -> str:
    """The choice-point label of edge ``k`` of a cell type, e.g. ``normal/edge_3``."""
    return f"{cell_type}/edge_{k}"
