"""Registry of search spaces: how to build each supernet and read each genotype."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from torch import nn

from supernets.darts.genotype import DartsGenotype
from supernets.darts.search import DartsSupernet
from supernets.errors import SpaceError


@dataclass(frozen=True)
class SpaceSpec:
    """What the framework needs to know about a search space.

    The supernet built by ``build_supernet`` exposes ``choice_points()``, ``forward(x, arch)`` and
    ``derive(arch_weights) -> genotype``; genotypes have ``to_dict()`` and ``str()``.
    """

    build_supernet: Callable[..., nn.Module]
    genotype_from_dict: Callable[[Mapping[str, Any]], Any]


SPACES: dict[str, SpaceSpec] = {
    "darts": SpaceSpec(build_supernet=DartsSupernet, genotype_from_dict=DartsGenotype.from_dict),
}


def list_spaces() -> list[str]:
    """Names of the registered search spaces."""
    return sorted(SPACES)


def get_space(name: str) -> SpaceSpec:
    """The registered space ``name``; unknown names raise SpaceError listing the choices."""
    if name not in SPACES:
        raise SpaceError(f"unknown space '{name}'; choose one of: {', '.join(list_spaces())}")
    return SPACES[name]


def create_supernet(name: str, **kwargs: Any) -> nn.Module:
    """Build the supernet of space ``name`` from its options."""
    spec = get_space(name)
    try:
        return spec.build_supernet(**kwargs)
    except TypeError as err:
        raise SpaceError(f"bad option for space '{name}': {err}") from None
