"""The base of every search space: an ordinary ``nn.Module`` with choices in it.

A space subclasses :class:`Supernet`, builds :class:`~supernets.choices.OpChoice` and
:class:`~supernets.choices.InputChoice` modules where it likes, and writes ``forward(self, x)``
as for any network. The framework calls ``supernet(x, arch)``: the architecture (``label ->``
weight row or :class:`~supernets.mixed.SparseRow`) is bound to every choice for that call, so
it works unchanged under ``torch.func.functional_call``, DDP and ``torch.compile``.

Everything else has a default that a space may override: :meth:`Supernet.choice_points` (found
by walking the modules), :meth:`Supernet.derive` (argmax per operation, top-k per input
choice), :meth:`Supernet.node_edges` (which edges feed which node; none declared), the
genotype (:class:`~supernets.choice_genotype.ChoiceGenotype`), the discrete decisions sampling
algorithms draw (:meth:`Supernet.sampling_decisions`) and the fixed network of a genotype
(:meth:`Supernet.fixed_network`).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, ClassVar, Iterator, Mapping

import torch
from torch import nn

from supernets.choice_genotype import ChoiceGenotype
from supernets.choices import (ArchBinding, Choice, ChoiceValue, InputChoice, OpChoice,
                               fixed_architecture, is_choice)
from supernets.decisions import Choice as Decision
from supernets.decisions import chosen_index
from supernets.errors import GenotypeError, SpaceError
from supernets.mixed import ArchRow, SparseRow, weight_row


def _binding_forward(forward: Callable[..., Any]) -> Callable[..., Any]:
    """``forward(self, x)`` as ``forward(self, x, arch=None)``, binding ``arch`` for the call."""

    @functools.wraps(forward)
    def forward_with_arch(self: Supernet, x: Any, arch: Mapping[str, ArchRow] | None = None) -> Any:
        index = self.choices()
        binding: ArchBinding = self.__dict__["_arch_binding"]
        if arch is None:
            if index and binding.rows is None:
                raise SpaceError(f"{type(self).__name__} has choices; call it as supernet(x, arch) "
                                 "with one row per label of supernet.choice_points()")
            return forward(self, x)
        previous, binding.rows = binding.rows, arch
        try:
            return forward(self, x)
        finally:
            binding.rows = previous

    forward_with_arch.binds_arch = True  # type: ignore[attr-defined]
    return forward_with_arch


class Supernet(nn.Module):
    """A search space: subclass it, put choices in ``__init__``, write ``forward(self, x)``.

    Calling ``supernet(x, arch)`` runs ``forward(x)`` with ``arch`` bound to the choices. Built
    by :meth:`fixed_network`, the same class is a plain network called as ``net(x)``.
    Choices are collected once, on first use: build every choice in ``__init__``.
    ``quick_options`` are the sizes ``experiment=quick`` gives the space (a few minutes' search
    on a CPU).
    """

    quick_options: ClassVar[dict[str, Any]] = {}
    genotype_class: ClassVar[type] = ChoiceGenotype
    """The space's genotype: ``from_dict`` reads its JSON form and ``from_text``, where it has one,
    its one-line text form."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        forward = cls.__dict__.get("forward")
        if forward is not None and not getattr(forward, "binds_arch", False):
            cls.forward = _binding_forward(forward)  # type: ignore[method-assign]

    # -- the choices -----------------------------------------------------------------------
    def choices(self) -> dict[str, list[Choice]]:
        """Every choice module by label (cells of one type share a label), in module order.

        Same label, different candidates (or kind) is a :class:`SpaceError`.
        """
        index = self.__dict__.get("_choice_index")
        if index is None:
            index = _collect_choices(self)
            binding = ArchBinding()
            for modules in index.values():
                for module in modules:
                    module._binding = binding
            self.__dict__["_arch_binding"] = binding
            self.__dict__["_choice_index"] = index
        return index

    def choice_points(self) -> dict[str, list[str]]:
        """Every label with its candidate names (an input choice's are ``"0" .. "n-1"``)."""
        return {label: list(modules[0].candidates) for label, modules in self.choices().items()}

    @contextlib.contextmanager
    def bound(self, arch: Mapping[str, ArchRow]) -> Iterator[None]:
        """Bind ``arch`` to the choices while inside, to call a part of the space on its own."""
        self.choices()
        binding: ArchBinding = self.__dict__["_arch_binding"]
        previous, binding.rows = binding.rows, arch
        try:
            yield
        finally:
            binding.rows = previous

    def choice(self, label: str) -> Choice:
        """The (first) choice module of ``label``."""
        index = self.choices()
        if label not in index:
            raise SpaceError(f"this space has no choice '{label}'; its labels: {', '.join(index)}")
        return index[label][0]

    def node_edges(self) -> dict[str, list[str]] | None:
        """The operation-choice labels of the edges summed into each node, by node name.

        Edge normalization (``algorithm=pcdarts``) weights a node's incoming edges by a softmax
        over them. ``None`` (the default) says the space does not declare its nodes.
        """
        return None

    # -- deriving a genotype ---------------------------------------------------------------
    def derive(self, weights: Mapping[str, torch.Tensor]) -> Any:
        """The genotype of weight rows: argmax per operation choice, top-k per input choice."""
        chosen: dict[str, ChoiceValue] = {}
        for label in self.choices():
            row = weight_row(weights, label, len(self.choice(label).candidates))
            chosen[label] = self._chosen_from_row(label, row)
        return self.genotype_from_choices(chosen)

    def _chosen_from_row(self, label: str, row: torch.Tensor) -> ChoiceValue:
        choice = self.choice(label)
        if isinstance(choice, InputChoice):
            top = torch.topk(row, choice.num_chosen).indices.tolist()
            return tuple(sorted(int(i) for i in top))
        return choice.candidates[int(torch.argmax(row))]

    def genotype_from_choices(self, chosen: Mapping[str, ChoiceValue]) -> Any:
        """The space's genotype of ``label -> choice`` (the generic genotype by default)."""
        return ChoiceGenotype(tuple(chosen.items()))

    @classmethod
    def genotype_choices(cls, genotype: Any) -> dict[str, ChoiceValue]:
        """``label -> choice`` of a genotype of this space (inverse of :meth:`genotype_from_choices`)."""
        cls.require_genotype(genotype)
        return genotype.as_dict()

    @classmethod
    def require_genotype(cls, genotype: Any) -> None:
        """Raise :class:`GenotypeError` unless ``genotype`` is a :attr:`genotype_class`."""
        if not isinstance(genotype, cls.genotype_class):
            raise GenotypeError(f"{cls.__name__} takes a {cls.genotype_class.__name__}, "
                                f"got {type(genotype).__name__}")


    def check_genotype(self, genotype: Any) -> None:
        """Raise :class:`GenotypeError` unless ``genotype`` is an architecture of this space."""
        chosen = self.genotype_choices(genotype)
        index = self.choices()
        missing = [label for label in index if label not in chosen]
        extra = [label for label in chosen if label not in index]
        if missing or extra:
            raise GenotypeError(f"the genotype does not fit this space: missing {missing or 'none'}, "
                                f"unknown {extra or 'none'}; derive it from this space")
        for label, value in chosen.items():
            choice = index[label][0]
            if isinstance(choice, OpChoice) and value not in choice.candidates:
                raise GenotypeError(f"genotype choice '{label}' is {value!r}; choose one of: "
                                    f"{', '.join(choice.candidates)}")
            if isinstance(choice, InputChoice) and value not in choice.combinations():
                raise GenotypeError(f"genotype choice '{label}' must be {choice.num_chosen} "
                                    f"distinct inputs in 0..{len(choice.candidates) - 1} in "
                                    f"increasing order, got {value!r}")

    # -- sampling one architecture (ENAS, SPOS, random and evolutionary search) -------------
    def sampling_decisions(self) -> list[Any]:
        """One categorical decision per label: a candidate, or a set of inputs (``"0+2"``)."""
        decisions = []
        for label, modules in self.choices().items():
            choice = modules[0]
            if isinstance(choice, InputChoice):
                names = tuple("+".join(map(str, c)) for c in choice.combinations())
                decisions.append(Decision(label, names))
            else:
                decisions.append(Decision(label, tuple(choice.candidates)))
        return decisions

    def sampled_arch(self, choices: Mapping[str, int]) -> dict[str, ArchRow]:
        """The ``arch`` that runs exactly the sampled candidates (and inputs)."""
        arch: dict[str, ArchRow] = {}
        for decision in self.sampling_decisions():
            picked = self._picked(decision, choices)
            row = torch.zeros(len(self.choice(decision.label).candidates))
            row[list(picked)] = 1.0
            arch[decision.label] = SparseRow(row, picked)
        return arch

    def sampled_genotype(self, choices: Mapping[str, int]) -> Any:
        """The genotype of a sample of :meth:`sampling_decisions`."""
        chosen: dict[str, ChoiceValue] = {}
        for decision in self.sampling_decisions():
            picked = self._picked(decision, choices)
            choice = self.choice(decision.label)
            chosen[decision.label] = picked if isinstance(choice, InputChoice) \
                else choice.candidates[picked[0]]
        return self.genotype_from_choices(chosen)

    def _picked(self, decision: Decision, choices: Mapping[str, int]) -> tuple[int, ...]:
        index = chosen_index(choices, decision)
        choice = self.choice(decision.label)
        return choice.combinations()[index] if isinstance(choice, InputChoice) else (index,)

    # -- the fixed network -----------------------------------------------------------------
    @classmethod
    def fixed_network_options(cls, genotype: Any, options: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor options of the fixed network of ``genotype``, from the search's ``options``.

        By default the network is built as it was searched; a space whose genotype carries its
        own shape, or whose evaluation protocol differs, overrides this.
        """
        return dict(options)

    @classmethod
    def fixed_network(cls, genotype: Any, **options: Any) -> Supernet:
        """This space with every choice replaced by its chosen candidate, with fresh weights."""
        with fixed_architecture(cls.genotype_choices(genotype)):
            return cls(**options)


def _collect_choices(root: nn.Module) -> dict[str, list[Choice]]:
    index: dict[str, list[Choice]] = {}
    for name, module in root.named_modules():
        if not is_choice(module):
            continue
        modules = index.setdefault(module.label, [])
        if modules and not _same_choice(modules[0], module):
            raise SpaceError(f"choice label '{module.label}' is used twice with different "
                             f"candidates ({list(modules[0].candidates)} and "
                             f"{list(module.candidates)} at {name}); give each its own label")
        modules.append(module)
    return index


def _same_choice(a: Choice, b: Choice) -> bool:
    if type(a) is not type(b) or a.candidates != b.candidates:
        return False
    return not isinstance(a, InputChoice) or a.num_chosen == b.num_chosen  # type: ignore[union-attr]
