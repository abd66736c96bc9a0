"""NAS-Bench-201 genotypes: the operation of each edge, the benchmark's string form, derive rule."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from supernets.errors import GenotypeError, SpaceError
from supernets.mixed import weight_row
from supernets.nb201.ops import NB201_OPS
from supernets.nb201.topology import NODES, edge_inputs, edge_label

SPACE = "nb201"
NUM_EDGES = len(edge_inputs())
TEXT_FORM = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|"
             "+|skip_connect~0|none~1|nor_conv_1x1~2|")

Node = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Nb201Genotype:
    """A NAS-Bench-201 cell: ``ops[k]`` is the operation of edge ``k`` in benchmark order
    (``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2``, see :mod:`supernets.nb201.topology`).

    ``none`` is a valid choice (the edge is absent). ``str()`` gives the benchmark's string,
    ``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...|``.
    """

    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        ops = self.ops
        if isinstance(ops, (str, bytes, Mapping)) or not isinstance(ops, Sequence):
            raise GenotypeError(f"a NAS-Bench-201 genotype needs a list of {NUM_EDGES} operations "
                                f"(one per edge), got {type(ops).__name__}")
        if len(ops) != NUM_EDGES:
            raise GenotypeError(f"a NAS-Bench-201 genotype needs {NUM_EDGES} operations (one per "
                                f"edge), got {len(ops)}")
        for k, op in enumerate(ops):
            if op not in NB201_OPS:
                raise GenotypeError(f"genotype edge {k}: {_short(op)} is not a NAS-Bench-201 "
                                    f"operation; use one of: {', '.join(NB201_OPS)}")
        object.__setattr__(self, "ops", tuple(ops))

    @property
    def nodes(self) -> tuple[Node, ...]:
        """Per node 1..3, its ``(op, input)`` pairs for inputs ``0 .. node - 1``."""
        nodes: list[list[tuple[str, int]]] = [[] for _ in range(1, NODES)]
        for op, (node, j) in zip(self.ops, edge_inputs()):
            nodes[node - 1].append((op, j))
        return tuple(tuple(node) for node in nodes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: per node its ``[op, input]`` pairs,
        ``{"nodes": [[[op, 0]], [[op, 0], [op, 1]], [[op, 0], [op, 1], [op, 2]]]}``."""
        return {"nodes": [[[op, j] for op, j in node] for node in self.nodes]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Nb201Genotype:
        """Build from :meth:`to_dict` output (lists or tuples); errors name the bad field."""
        if not isinstance(data, Mapping) or sorted(map(str, data)) != ["nodes"]:
            got = sorted(map(str, data)) if isinstance(data, Mapping) else type(data).__name__
            raise GenotypeError("a NAS-Bench-201 genotype must be an object with the one field "
                                f"'nodes' (a list of [op, input] pairs per node); got {got}")
        nodes = data["nodes"]
        if _not_list(nodes) or len(nodes) != NODES - 1:
            raise GenotypeError(f"genotype field 'nodes' must list {NODES - 1} nodes, each a list "
                                f"of [op, input] pairs; got {_short(nodes)}")
        ops = []
        for node, pairs in enumerate(nodes, start=1):
            where = f"nodes[{node - 1}]"
            if _not_list(pairs) or len(pairs) != node:
                raise GenotypeError(f"genotype field '{where}' must hold {node} [op, input] "
                                    f"pair(s), one per input 0..{node - 1}; got {_short(pairs)}")
            for j, pair in enumerate(pairs):
                if _not_list(pair) or len(pair) != 2:
                    raise GenotypeError(f"genotype field '{where}[{j}]' must be an [op, input] "
                                        f"pair, got {_short(pair)}")
                op, source = pair
                if isinstance(source, bool) or not isinstance(source, numbers.Integral) \
                        or source != j:
                    raise GenotypeError(f"genotype field '{where}[{j}]' must read input {j} "
                                        f"(pairs list inputs 0..{node - 1} in order), "
                                        f"got {_short(source)}")
                ops.append(op)
        return cls(tuple(ops))

    def to_text(self) -> str:
        """The benchmark's string, e.g.
        ``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...|``."""
        return "+".join("|" + "|".join(f"{op}~{j}" for op, j in node) + "|" for node in self.nodes)

    @classmethod
    def from_text(cls, text: str) -> Nb201Genotype:
        """Parse the benchmark's string strictly (surrounding white space is ignored).

        Every node lists each of its inputs once, in order; errors name the bad part.
        """
        if not isinstance(text, str):
            raise GenotypeError(f"genotype text must be a string, got {type(text).__name__}")
        parts = text.strip().split("+")
        if len(parts) != NODES - 1:
            raise GenotypeError(f"NAS-Bench-201 genotype text needs {NODES - 1} '+'-separated "
                                f"nodes, got {len(parts)} in {_short(text.strip())}; "
                                f"write it as {TEXT_FORM}")
        ops: list[str] = []
        for node, part in enumerate(parts, start=1):
            ops.extend(_parse_node(node, part))
        return cls(tuple(ops))

    def __str__(self) -> str:
        return self.to_text()


def derive_nb201_genotype(weights: Mapping[str, torch.Tensor],
                          candidates: Sequence[str]) -> Nb201Genotype:
    """The strongest candidate of every edge (``none`` included; ties go to the earlier one)."""
    candidates = tuple(candidates)
    unknown = [name for name in candidates if name not in NB201_OPS]
    if unknown or not candidates:
        raise SpaceError(f"NAS-Bench-201 candidates must be a non-empty subset of: "
                         f"{', '.join(NB201_OPS)}; got {list(candidates)}")
    ops = []
    for k in range(NUM_EDGES):
        row = weight_row(weights, edge_label(k), len(candidates))
        ops.append(candidates[int(torch.argmax(row))])
    return Nb201Genotype(tuple(ops))


def _parse_node(node: int, part: str) -> list[str]:
    """The operations of one ``|op~0|op~1|`` part of the string; errors name the part."""
    where = f"NAS-Bench-201 genotype text, node {node} {_short(part)}"
    expected = "|" + "|".join(f"op~{j}" for j in range(node)) + "|"
    if len(part) < 2 or not (part.startswith("|") and part.endswith("|")):
        raise GenotypeError(f"{where}: a node must be written {expected}")
    entries = part[1:-1].split("|")
    if len(entries) != node:
        raise GenotypeError(f"{where}: node {node} needs {node} input(s) written {expected}, "
                            f"got {len(entries)}")
    ops = []
    for j, entry in enumerate(entries):
        op, tilde, source = entry.partition("~")
        if not tilde or source != str(j):
            raise GenotypeError(f"{where}: entry {_short(entry)} must be 'op~{j}' "
                                f"(inputs 0..{node - 1} in order)")
        if op not in NB201_OPS:
            raise GenotypeError(f"{where}: {_short(op)} is not a NAS-Bench-201 operation; "
                                f"use one of: {', '.join(NB201_OPS)}")
        ops.append(op)
    return ops


def _not_list(value: Any) -> bool:
    return isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence)


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters for one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
