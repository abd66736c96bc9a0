"""DARTS genotypes: the discrete cell pair, its JSON and text forms, and the derive rule."""

from __future__ import annotations

import ast
import numbers
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from supernets.darts.topology import CELL_TYPES, edge_inputs, edge_label
from supernets.errors import GenotypeError, SpaceError
from supernets.genotype_file import load_genotype_file
from supernets.mixed import weight_row
from supernets.ops import DARTS_PRIMITIVES

SPACE = "darts"
GENOTYPE_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
GENOTYPE_OPS = tuple(op for op in DARTS_PRIMITIVES if op != "none")

Cell = tuple[tuple[str, int], ...]

_TEXT_FORM = ("Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], "
              "reduce=[...], reduce_concat=[2, 3, 4, 5])")
_ASSIGNMENT = re.compile(r"[A-Za-z_]\w*\s*=\s*(?=Genotype\s*\()")


@dataclass(frozen=True)
class DartsGenotype:
    """A derived DARTS architecture: the normal and reduction cells.

    Entry ``t`` of a cell is ``(op, input)`` for intermediate node ``t // 2``; node ``i`` reads
    input ``0`` or ``1`` (the cell inputs) or ``j >= 2`` (intermediate node ``j - 2``), so
    ``input <= i + 1``. ``*_concat`` lists the states (``2 .. steps + 1``) concatenated as output.
    Construction validates every field and stores plain tuples.
    """

    normal: Cell
    normal_concat: tuple[int, ...]
    reduce: Cell
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        normal = _check_cell("normal", self.normal)
        reduce = _check_cell("reduce", self.reduce)
        if len(normal) != len(reduce):
            raise GenotypeError(
                f"genotype fields 'normal' and 'reduce' have {len(normal) // 2} and "
                f"{len(reduce) // 2} nodes; both cells need the same number of nodes")
        steps = len(normal) // 2
        object.__setattr__(self, "normal", normal)
        object.__setattr__(self, "reduce", reduce)
        for name in ("normal_concat", "reduce_concat"):
            object.__setattr__(self, name, _check_concat(name, getattr(self, name), steps))

    @property
    def steps(self) -> int:
        """Number of intermediate nodes per cell."""
        return len(self.normal) // 2

    def to_dict(self) -> dict[str, list[Any]]:
        """JSON-ready form: ``{"normal": [[op, input], ...], "normal_concat": [2, ...], ...}``."""
        return {
            "normal": [[op, j] for op, j in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, j] for op, j in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DartsGenotype:
        """Build from :meth:`to_dict` output (lists or tuples); errors name the bad field."""
        fields = ", ".join(GENOTYPE_FIELDS)
        if not isinstance(data, Mapping):
            raise GenotypeError(f"a DARTS genotype must be an object with fields {fields}; "
                                f"got {type(data).__name__}")
        unknown = sorted(str(key) for key in data if key not in GENOTYPE_FIELDS)
        if unknown:
            raise GenotypeError(f"unknown genotype field(s) {', '.join(unknown)}; "
                                f"a DARTS genotype has fields {fields}")
        for name in GENOTYPE_FIELDS:
            if name not in data:
                raise GenotypeError(f"genotype field '{name}' is missing; "
                                    f"a DARTS genotype has fields {fields}")
        return cls(**{name: data[name] for name in GENOTYPE_FIELDS})

    def to_text(self) -> str:
        """The original DARTS form, ``Genotype(normal=[('sep_conv_3x3', 0), ...], ...)``."""
        return (f"Genotype(normal={list(self.normal)!r}, "
                f"normal_concat={list(self.normal_concat)!r}, "
                f"reduce={list(self.reduce)!r}, reduce_concat={list(self.reduce_concat)!r})")

    @classmethod
    def from_text(cls, text: str) -> DartsGenotype:
        """Parse the DARTS text form by walking its syntax tree; nothing is evaluated.

        Accepts ``Genotype(...)``, the bare ``normal=..., ...`` keywords, an optional leading
        ``NAME =`` as in the reference ``genotypes.py`` files, and ``range(a, b)`` for a concat.
        """
        if not isinstance(text, str):
            raise GenotypeError(f"genotype text must be a string, got {type(text).__name__}")
        source = _ASSIGNMENT.sub("", text.strip(), count=1)
        if not re.match(r"Genotype\s*\(", source):
            source = f"Genotype{source}" if source.startswith("(") else f"Genotype({source})"
        try:
            tree = ast.parse(source, mode="eval")
        except (SyntaxError, ValueError, MemoryError, RecursionError) as err:
            detail = err.msg if isinstance(err, SyntaxError) else type(err).__name__
            raise GenotypeError(f"genotype text is not in the DARTS form ({detail}); "
                                f"write it as {_TEXT_FORM}") from None
        call = tree.body
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                and call.func.id == "Genotype" and not call.args):
            raise GenotypeError("genotype text must be a Genotype(...) of keyword fields; "
                                f"write it as {_TEXT_FORM}")
        fields: dict[str, Any] = {}
        for keyword in call.keywords:
            if keyword.arg not in GENOTYPE_FIELDS:
                raise GenotypeError(f"genotype text has unknown field {keyword.arg or '**'!r}; "
                                    f"use {', '.join(GENOTYPE_FIELDS)}")
            if keyword.arg in fields:
                raise GenotypeError(f"genotype text gives field '{keyword.arg}' twice; "
                                    "give each field once")
            fields[keyword.arg] = _literal_field(keyword.arg, keyword.value)
        return cls.from_dict(fields)

    def __str__(self) -> str:
        return self.to_text()


def derive_darts_genotype(weights: Mapping[str, torch.Tensor], candidates: Sequence[str], *,
                          steps: int = 4, max_skip_connect: int | None = None) -> DartsGenotype:
    """Discretize DARTS architecture weights with the reference rule (Liu et al., 2019).

    ``weights`` maps ``normal/edge_k`` and ``reduce/edge_k`` to a 1-D softmax row over
    ``candidates``. Each edge is scored by its strongest non-``none`` op; every node keeps its
    two best-scored incoming edges (strongest first), each labelled with that op. Ties go to the
    lower input index and the earlier candidate.

    ``max_skip_connect`` guards against the collapse into parameter-free cells (P-DARTS, Chen et
    al., 2019): while the normal cell keeps more skip connections than that, the kept skip edge
    with the weakest skip weight loses ``skip_connect`` as a candidate and the cell is derived again.
    """
    candidates = tuple(candidates)
    unknown = [name for name in candidates if name not in DARTS_PRIMITIVES]
    if unknown:
        raise SpaceError(f"unknown DARTS candidate(s) {unknown}; "
                         f"choose from: {', '.join(DARTS_PRIMITIVES)}")
    usable = [i for i, name in enumerate(candidates) if name != "none"]
    if not usable:
        raise SpaceError("cannot derive a genotype: the candidates need at least one operation "
                         "besides 'none'")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise SpaceError(f"steps must be a positive integer (intermediate nodes per cell), "
                         f"got {steps!r}")
    if max_skip_connect is not None and (isinstance(max_skip_connect, bool)
                                         or not isinstance(max_skip_connect, int) or max_skip_connect < 0):
        raise SpaceError(f"max_skip_connect must be a non-negative integer or null, got {max_skip_connect!r}")
    rows = {cell_type: [weight_row(weights, edge_label(cell_type, k), len(candidates)).double().cpu().tolist()
                        for k in range(len(edge_inputs(steps)))] for cell_type in CELL_TYPES}
    cells = {cell_type: _derive_cell(rows[cell_type], candidates, usable, steps, banned=set())
             for cell_type in CELL_TYPES}
    if max_skip_connect is not None and "skip_connect" in candidates:
        skip = candidates.index("skip_connect")
        banned: set[int] = set()
        while sum(op == "skip_connect" for _, op, _ in cells["normal"]) > max_skip_connect:
            weakest = min((k for k, op, _ in cells["normal"] if op == "skip_connect"),
                          key=lambda k: rows["normal"][k][skip])
            banned.add(weakest)
            cells["normal"] = _derive_cell(rows["normal"], candidates, usable, steps, banned=banned)
    concat = tuple(range(2, steps + 2))
    return DartsGenotype(normal=tuple((op, j) for _, op, j in cells["normal"]), normal_concat=concat,
                         reduce=tuple((op, j) for _, op, j in cells["reduce"]), reduce_concat=concat)


def _derive_cell(rows: Sequence[Sequence[float]], candidates: Sequence[str], usable: Sequence[int],
                 steps: int, *, banned: set[int]) -> list[tuple[int, str, int]]:
    """``(edge k, op, input j)`` of the two kept edges per node; banned edges may not pick skip."""
    scored: list[list[tuple[float, int, int, str]]] = [[] for _ in range(steps)]
    for k, (node, j) in enumerate(edge_inputs(steps)):
        allowed = [i for i in usable if not (k in banned and candidates[i] == "skip_connect")]
        if not allowed:
            continue
        best = max(allowed, key=rows[k].__getitem__)
        scored[node].append((rows[k][best], j, k, candidates[best]))
    return [(k, op, j) for edges in scored
            for _, j, k, op in sorted(edges, key=lambda edge: -edge[0])[:2]]


def load_darts_genotype(path: str | os.PathLike[str]) -> tuple[DartsGenotype, dict[str, Any]]:
    """Read a ``darts`` genotype file; returns the genotype and its meta."""
    loaded = load_genotype_file(path)
    if loaded.space != SPACE:
        raise GenotypeError(f"genotype file '{path}' is for space '{loaded.space}', "
                            f"not '{SPACE}'; pass a DARTS genotype file")
    try:
        genotype = DartsGenotype.from_dict(loaded.genotype)
    except GenotypeError as err:
        raise GenotypeError(f"genotype file '{path}': {err}") from None
    return genotype, loaded.meta


def _check_cell(name: str, value: Any) -> Cell:
    """Validate one cell's ``(op, input)`` entries and return them as a tuple of tuples."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise GenotypeError(f"genotype field '{name}' must be a list of (op, input) pairs, "
                            f"got {type(value).__name__}")
    if not value or len(value) % 2:
        raise GenotypeError(f"genotype field '{name}' has {len(value)} entries; a cell needs "
                            "exactly 2 (op, input) entries per node, e.g. 8 for 4 nodes")
    ops = ", ".join(GENOTYPE_OPS)
    entries = []
    for t, entry in enumerate(value):
        where, node = f"{name}[{t}]", t // 2
        if (isinstance(entry, (str, bytes, Mapping)) or not isinstance(entry, Sequence)
                or len(entry) != 2):
            raise GenotypeError(f"genotype field '{where}' must be an (op, input) pair, "
                                f"got {_short(entry)}")
        op, j = entry
        if op == "none":
            raise GenotypeError(f"genotype field '{where}': 'none' cannot be a chosen operation; "
                                f"use one of: {ops}")
        if op not in GENOTYPE_OPS:
            raise GenotypeError(f"genotype field '{where}': {_short(op)} is not a DARTS operation; "
                                f"use one of: {ops}")
        if isinstance(j, bool) or not isinstance(j, numbers.Integral):
            raise GenotypeError(f"genotype field '{where}': input must be an integer, "
                                f"got {_short(j)}")
        j = int(j)
        if not 0 <= j <= node + 1:
            raise GenotypeError(f"genotype field '{where}': input {j} is out of range for node "
                                f"{node}; node {node} may read inputs 0..{node + 1}")
        entries.append((op, j))
    return tuple(entries)


def _check_concat(name: str, value: Any, steps: int) -> tuple[int, ...]:
    """Validate a concat list (or range) against ``steps`` intermediate nodes."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise GenotypeError(f"genotype field '{name}' must be a list of node indices, "
                            f"got {type(value).__name__}")
    if not value:
        raise GenotypeError(f"genotype field '{name}' is empty; list the nodes to concatenate, "
                            f"e.g. {list(range(2, steps + 2))}")
    indices: list[int] = []
    for index in value:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise GenotypeError(f"genotype field '{name}': index {_short(index)} "
                                "is not an integer")
        index = int(index)
        if not 2 <= index <= steps + 1:
            raise GenotypeError(f"genotype field '{name}': index {index} is out of range; "
                                f"use intermediate nodes 2..{steps + 1}")
        if index in indices:
            raise GenotypeError(f"genotype field '{name}': index {index} appears twice; "
                                "list each node once")
        indices.append(index)
    return tuple(indices)


def _literal_field(name: str, node: ast.expr) -> Any:
    """The value of one keyword of the text form: a literal, or ``range(...)`` for a concat."""
    is_concat = name.endswith("_concat")
    if (is_concat and isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "range" and 1 <= len(node.args) <= 2 and not node.keywords):
        bounds = [_literal_field(name, arg) for arg in node.args]
        if not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
            raise GenotypeError(f"genotype text: field '{name}' uses range() with non-integer "
                                "bounds; write e.g. range(2, 6)")
        return list(range(*bounds))
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        expected = "a literal list or range(a, b)" if is_concat else "a literal list of (op, input)"
        raise GenotypeError(f"genotype text: field '{name}' must be {expected}, "
                            f"got {_short(ast.unparse(node))}") from None


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters for one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


