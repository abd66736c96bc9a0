"""A search space as a sequence of discrete decisions, for algorithms that sample architectures.

A supernet describes itself with ``sampling_decisions()`` (a list of :class:`Choice` and
:class:`CellChoices`), turns a sample into its ``arch`` with ``sampled_arch(choices)`` and into
a genotype with ``sampled_genotype(choices)`` (:class:`~supernets.supernet.Supernet` gives one
decision per choice label by default). ``choices`` always maps a decision label to the index of
the chosen candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence, Union

from supernets.errors import SpaceError


@dataclass(frozen=True)
class Choice:
    """Pick one of ``candidates`` for the decision ``label``."""

    label: str
    candidates: tuple[str, ...]


@dataclass(frozen=True)
class CellChoices:
    """A cell as ENAS's micro search samples it.

    The cell has ``num_inputs`` input states; each of its ``steps`` nodes picks
    ``inputs_per_node`` earlier states (``node_{i}/input_{k}``: state ``0 .. num_inputs + i - 1``,
    the same state may be picked twice) and then an operation for each (``node_{i}/op_{k}``: an
    index into ``ops``), in that order.
    """

    name: str
    ops: tuple[str, ...]
    steps: int
    num_inputs: int = 2
    inputs_per_node: int = 2

    def input_label(self, node: int, k: int) -> str:
        """Label of the ``k``-th input decision of ``node``, e.g. ``normal/node_0/input_1``."""
        return f"{self.name}/node_{node}/input_{k}"

    def op_label(self, node: int, k: int) -> str:
        """Label of the ``k``-th operation decision of ``node``, e.g. ``normal/node_0/op_1``."""
        return f"{self.name}/node_{node}/op_{k}"

    def decisions(self) -> list[Choice]:
        """Every decision of the cell in sampling order; inputs are named by state index."""
        out = []
        for node in range(self.steps):
            states = tuple(str(j) for j in range(self.num_inputs + node))
            out += [Choice(self.input_label(node, k), states) for k in range(self.inputs_per_node)]
            out += [Choice(self.op_label(node, k), self.ops) for k in range(self.inputs_per_node)]
        return out


Decision = Union[Choice, CellChoices]


def flat_decisions(decisions: Sequence[Decision]) -> list[Choice]:
    """Every single categorical decision, cells expanded, in sampling order."""
    out: list[Choice] = []
    for decision in decisions:
        out += decision.decisions() if isinstance(decision, CellChoices) else [decision]
    return out


def chosen_index(choices: Mapping[str, int], decision: Choice) -> int:
    """The chosen index of ``decision``, checked against its candidates."""
    if decision.label not in choices:
        raise SpaceError(f"the sampled architecture has no decision '{decision.label}'; "
                         "sample it from this search space")
    index = choices[decision.label]
    if isinstance(index, bool) or not isinstance(index, int) or \
            not 0 <= index < len(decision.candidates):
        raise SpaceError(f"decision '{decision.label}' must be an index in "
                         f"0..{len(decision.candidates) - 1}, got {index!r}")
    return index
