"""How the edges of a NAS-Bench-201 cell are numbered, shared by the search and derived networks.

Node 0 is the cell input; nodes 1..3 each sum one edge from every earlier node; node 3 is the
cell output. Edges are numbered in the benchmark's string order:

=====  ======  ======  ======  ======  ======  ======
edge   0       1       2       3       4       5
node   1 <- 0  2 <- 0  2 <- 1  3 <- 0  3 <- 1  3 <- 2
=====  ======  ======  ======  ======  ======  ======
"""

from __future__ import annotations

NODES = 4
CELL = "cell"


def edge_inputs() -> list[tuple[int, int]]:
    """``(node, input)`` per edge in benchmark order: node ``i`` reads nodes ``0 .. i - 1``."""
    return [(node, j) for node in range(1, NODES) for j in range(node)]


def edge_label(k: int) -> str:
    """The choice-point label of edge ``k``, e.g. ``cell/edge_3`` (node 3 <- node 0)."""
    return f"{CELL}/edge_{k}"
