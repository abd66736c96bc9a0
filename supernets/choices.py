"""Choices that describe themselves: the building blocks of a search space.

A search space is an ordinary ``nn.Module`` (a :class:`~supernets.supernet.Supernet`) whose code
contains choices:

- :class:`OpChoice` ``(label, candidates)``: one of several operations on a tensor;
- :class:`InputChoice` ``(label, num_inputs, num_chosen)``: ``num_chosen`` of a list of tensors,
  summed.

Each choice is written once, with its label; choices of one label (the cells of one type) share
one row of architecture weights. The space's ``forward(x)`` calls choices like any module; the
supernet binds the architecture of the call to every choice, so no code passes ``arch`` around.

Depth is expressed with a ``none`` candidate (zeros, never computed) in the :class:`OpChoice` of
a residual block, ``x + choice(x)``: choosing ``none`` makes the block an identity, so a stage
whose first block is fixed and whose other ``n - 1`` blocks may choose ``none`` has any depth
from 1 to ``n`` (the proxyless space does this with its ``zero`` candidate).

Built inside :func:`fixed_architecture`, a choice is not built at all: an :class:`OpChoice`
becomes its chosen candidate and an :class:`InputChoice` a :class:`ChosenInputs`, which is how
the fixed network of a genotype is made (fresh weights, no choice machinery left).
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

import torch
from torch import nn

from supernets.drop_path import drop_path
from supernets.errors import GenotypeError, SpaceError
from supernets.mixed import ArchRow, MixedOp, SparseRow, is_unused
from supernets.ops import Zero, create_op

Candidates = Union[Sequence[str], Mapping[str, nn.Module]]
ChoiceValue = Union[str, tuple[int, ...]]


class ArchBinding:
    """The architecture of the forward pass in progress, shared by a supernet and its choices."""

    __slots__ = ("rows",)

    def __init__(self) -> None:
        self.rows: Mapping[str, ArchRow] | None = None


class _Bound:
    """What choices share: a label and the row of the architecture bound for the current call."""

    label: str
    _binding: ArchBinding | None

    def row(self) -> ArchRow:
        """This choice's row of the architecture the supernet is running."""
        binding = self._binding
        if binding is None or binding.rows is None:
            raise SpaceError(f"choice '{self.label}' was called outside a supernet forward; "
                             "call supernet(x, arch) on the Supernet that contains it")
        try:
            return binding.rows[self.label]
        except KeyError:
            raise SpaceError(f"the architecture has no row '{self.label}'; "
                             "give one row per label of supernet.choice_points()") from None

    def is_unused(self) -> bool:
        """Whether the bound row switches this choice off (a SparseRow with nothing active)."""
        return is_unused(self.row())


def _check_label(label: Any) -> str:
    if not isinstance(label, str) or not label or any(c.isspace() for c in label) or "=" in label:
        raise SpaceError(f"a choice label must be a non-empty string without spaces or '=', "
                         f"got {label!r}")
    return label


def _candidate_builder(label: str, candidates: Candidates, build: Callable[[str], nn.Module] | None,
                       channels: int | None, stride: int,
                       affine: bool) -> tuple[tuple[str, ...], Callable[[str], nn.Module]]:
    """Candidate names and how to build one: a dict's modules, ``build`` or the op registry."""
    if isinstance(candidates, Mapping):
        modules = dict(candidates)
        if not all(isinstance(m, nn.Module) for m in modules.values()):
            raise SpaceError(f"choice '{label}': a dict of candidates must map names to modules")
        names: tuple[str, ...] = tuple(modules)
        builder: Callable[[str], nn.Module] = modules.__getitem__
    else:
        if isinstance(candidates, str) or not all(isinstance(n, str) for n in candidates):
            raise SpaceError(f"choice '{label}': candidates must be a list of operation names or "
                             f"a dict of name -> module, got {candidates!r}")
        names = tuple(candidates)
        if build is not None:
            builder = build
        elif channels is None:
            raise SpaceError(f"choice '{label}': give channels= to build registry operations "
                             "by name, or build= to build them yourself")
        else:
            builder = lambda name: create_op(name, channels, stride, affine)  # noqa: E731
    if not names or len(set(names)) != len(names):
        raise SpaceError(f"choice '{label}' needs distinct candidates, got {list(names)}")
    return names, builder


class OpChoice(_Bound, MixedOp):
    """Choose one operation for ``x``: ``forward(x)`` is the mix its row of the architecture says.

    ``candidates`` are names of registered operations (built with ``channels``, ``stride`` and a
    BatchNorm that is affine only in the fixed network, as DARTS searches and evaluates), names
    built by ``build(name)``, or a dict of name -> module. With ``drop_path`` the chosen
    operation of a fixed network is dropped with the network's drop-path probability while
    retraining (use it where the output is summed with other paths).
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # copy.deepcopy and pickle call __new__ without arguments: build the module then
        if _FIXED and args:
            return _FIXED[-1].operation(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, label: str, candidates: Candidates, *,
                 build: Callable[[str], nn.Module] | None = None, channels: int | None = None,
                 stride: int = 1, drop_path: bool = False) -> None:
        label = _check_label(label)
        names, builder = _candidate_builder(label, candidates, build, channels, stride, False)
        super().__init__(names, builder)
        self.label = label
        self.drop_path = drop_path
        self._binding = None

    def forward(self, x: torch.Tensor, row: ArchRow | None = None) -> torch.Tensor:
        """The mix of the bound row (or of ``row`` when given)."""
        return super().forward(x, self.row() if row is None else row)

    def extra_repr(self) -> str:
        return f"label={self.label!r}, candidates={list(self.candidates)}"


class InputChoice(_Bound, nn.Module):
    """Choose ``num_chosen`` of ``num_inputs`` tensors and sum them.

    ``forward(inputs)`` returns ``sum_i row[i] * inputs[i]``; inputs whose weight is exactly
    zero in a sparse row are not touched. Its candidates are the input positions ``"0" ..``.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if _FIXED and args:
            return _FIXED[-1].inputs(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, label: str, num_inputs: int, num_chosen: int = 1) -> None:
        super().__init__()
        self.label = _check_label(label)
        _check_input_counts(self.label, num_inputs, num_chosen)
        self.candidates = tuple(str(i) for i in range(num_inputs))
        self.num_chosen = num_chosen
        self._binding = None

    def forward(self, inputs: Sequence[torch.Tensor], row: ArchRow | None = None) -> torch.Tensor:
        row = self.row() if row is None else row
        if len(inputs) != len(self.candidates):
            raise SpaceError(f"input choice '{self.label}' takes {len(self.candidates)} inputs, "
                             f"got {len(inputs)}")
        if isinstance(row, SparseRow):
            weights, active = row.weights, row.active
        else:
            weights, active = row, tuple(range(len(inputs)))
        if not active:
            raise SpaceError(f"input choice '{self.label}' got a row with no active input")
        out = weights[active[0]] * inputs[active[0]]
        for i in active[1:]:
            out = out + weights[i] * inputs[i]
        return out

    def combinations(self) -> list[tuple[int, ...]]:
        """Every set of ``num_chosen`` distinct inputs, in lexicographic order."""
        return list(itertools.combinations(range(len(self.candidates)), self.num_chosen))

    def extra_repr(self) -> str:
        return f"label={self.label!r}, num_inputs={len(self.candidates)}, num_chosen={self.num_chosen}"


def _check_input_counts(label: str, num_inputs: Any, num_chosen: Any) -> None:
    for name, value in (("num_inputs", num_inputs), ("num_chosen", num_chosen)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpaceError(f"input choice '{label}': {name} must be a positive integer, "
                             f"got {value!r}")
    if num_chosen > num_inputs:
        raise SpaceError(f"input choice '{label}' cannot choose {num_chosen} of {num_inputs} inputs")


Choice = Union[OpChoice, InputChoice]


# -- fixed networks ---------------------------------------------------------------------------
class ChosenInputs(nn.Module):
    """The fixed form of an :class:`InputChoice`: the sum of the chosen inputs."""

    def __init__(self, indices: Sequence[int]) -> None:
        super().__init__()
        self.indices = tuple(indices)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        out = inputs[self.indices[0]]
        for i in self.indices[1:]:
            out = out + inputs[i]
        return out

    def extra_repr(self) -> str:
        return f"indices={self.indices}"


class DropPathOp(nn.Module):
    """A chosen operation whose output is dropped with probability ``drop_prob`` in training."""

    drop_prob: torch.Tensor

    def __init__(self, op: nn.Module) -> None:
        super().__init__()
        self.op = op
        self.register_buffer("drop_prob", torch.zeros(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(self.op(x), self.drop_prob, self.training)


class _FixedChoices:
    """The choices of one genotype while its fixed network is built (see :func:`fixed_architecture`)."""

    def __init__(self, choices: Mapping[str, ChoiceValue]) -> None:
        self.choices = dict(choices)
        self.used: set[str] = set()

    def _value(self, label: str) -> ChoiceValue:
        if label not in self.choices:
            raise GenotypeError(f"the genotype has no choice for '{label}'; "
                                "derive it from this search space")
        self.used.add(label)
        return self.choices[label]

    def operation(self, label: str, candidates: Candidates, *,
                  build: Callable[[str], nn.Module] | None = None, channels: int | None = None,
                  stride: int = 1, drop_path: bool = False) -> nn.Module:
        names, builder = _candidate_builder(_check_label(label), candidates, build, channels,
                                            stride, True)
        name = self._value(label)
        if name not in names:
            raise GenotypeError(f"genotype choice '{label}' is {name!r}; "
                                f"choose one of: {', '.join(names)}")
        op = builder(name)
        return DropPathOp(op) if drop_path and not isinstance(op, (nn.Identity, Zero)) else op

    def inputs(self, label: str, num_inputs: int, num_chosen: int = 1) -> ChosenInputs:
        _check_input_counts(_check_label(label), num_inputs, num_chosen)
        indices = self._value(label)
        valid = isinstance(indices, tuple) and len(indices) == num_chosen and \
            len(set(indices)) == num_chosen and all(0 <= i < num_inputs for i in indices)
        if not valid:
            raise GenotypeError(f"genotype choice '{label}' must be {num_chosen} distinct inputs "
                                f"in 0..{num_inputs - 1}, got {indices!r}")
        return ChosenInputs(indices)


_FIXED: list[_FixedChoices] = []


@contextlib.contextmanager
def fixed_architecture(choices: Mapping[str, ChoiceValue]) -> Iterator[None]:
    """Inside, every choice built is replaced by its chosen candidate in ``choices``.

    ``choices`` maps an op-choice label to a candidate name and an input-choice label to a tuple
    of input indices. A label the network never builds is a :class:`GenotypeError`.
    """
    fixed = _FixedChoices(choices)
    _FIXED.append(fixed)
    try:
        yield
    finally:
        _FIXED.pop()
    unused = sorted(set(fixed.choices) - fixed.used)
    if unused:
        raise GenotypeError(f"the genotype has choice(s) {', '.join(unused)} that this search "
                            "space does not have; derive it from this space")


def building_fixed_network() -> bool:
    """Whether a fixed network is being built (inside :func:`fixed_architecture`)."""
    return bool(_FIXED)


def is_choice(module: nn.Module) -> bool:
    """Whether ``module`` is an operation or input choice."""
    return isinstance(module, (OpChoice, InputChoice))
