"""Edge normalization (PC-DARTS): per node, weights over its incoming edges (betas)."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from oneshot.errors import ConfigError
from oneshot.search.architecture import ArchitectureParameters


def check_node_edges(node_edges: Mapping[str, Sequence[str]] | None,
                     op_labels: Sequence[str]) -> dict[str, list[str]]:
    """``node_edges`` as a dict of lists, checked against the space's operation-choice labels."""
    if node_edges is None:
        raise ConfigError("edge normalization needs the edges into each node, and this space does "
                          "not declare them: define Supernet.node_edges() in the space or set "
                          "algorithm.edge_normalization=false")
    seen: set[str] = set()
    for node, labels in node_edges.items():
        unknown = [label for label in labels if label not in op_labels]
        twice = [label for label in labels if label in seen]
        if not labels or unknown or twice:
            raise ConfigError(f"the space's node_edges() lists node '{node}' with edges "
                              f"{list(labels)}: give each node one or more operation-choice "
                              f"labels, each label in one node only")
        seen.update(labels)
    return {node: list(labels) for node, labels in node_edges.items()}


class EdgeNormalizedParameters(ArchitectureParameters):
    """Alphas per choice point and betas per node (one per incoming edge).

    :meth:`softmax` gives each edge in a node its row ``softmax(beta)[e] * softmax(alpha)``, so
    the node sums its edges weighted by the softmax of its betas, and deriving from these rows
    ranks a node's inputs by ``softmax(alpha) * softmax(beta)`` as PC-DARTS does. Edges of no
    node keep ``softmax(alpha)``. :meth:`parameters_list` holds the betas after the alphas, so
    the architecture optimizer, the DDP all-reduce and checkpoints carry both.
    """

    def __init__(self, choice_points: Mapping[str, Sequence[str]],
                 node_edges: Mapping[str, Sequence[str]], *, init_std: float = 1e-3) -> None:
        super().__init__(choice_points, init_std=init_std)
        self.node_edges = {node: list(labels) for node, labels in node_edges.items()}
        self.betas = nn.ParameterDict(
            {node: nn.Parameter(init_std * torch.randn(len(labels)))
             for node, labels in self.node_edges.items()})

    def parameters_list(self) -> list[nn.Parameter]:
        """The alphas in label order, then the betas in node order."""
        return super().parameters_list() + [self.betas[node] for node in self.node_edges]

    def edge_weights(self) -> dict[str, torch.Tensor]:
        """Each node's edge weights, ``softmax(beta)``, by edge label."""
        weights: dict[str, torch.Tensor] = {}
        for node, labels in self.node_edges.items():
            weights.update(zip(labels, torch.softmax(self.betas[node], dim=-1)))
        return weights

    def softmax(self) -> dict[str, torch.Tensor]:
        """``label -> softmax(alpha)`` scaled by the edge's weight in its node."""
        rows = super().softmax()
        for label, weight in self.edge_weights().items():
            rows[label] = weight * rows[label]
        return rows
