"""Registry of search spaces: how to build each supernet, read each genotype, build its network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from torch import nn

from supernets.darts.derived import DartsNetwork
from supernets.darts.genotype import DartsGenotype
from supernets.darts.search import DartsSupernet
from supernets.errors import SpaceError
from supernets.nb201.derived import Nb201Network
from supernets.nb201.genotype import Nb201Genotype
from supernets.nb201.search import Nb201Supernet
from supernets.proxyless.derived import ProxylessNetwork
from supernets.proxyless.genotype import ProxylessGenotype
from supernets.proxyless.search import ProxylessSupernet


@dataclass(frozen=True)
class SpaceSpec:
    """What the framework needs to know about a search space.

    The supernet built by ``build_supernet`` exposes ``choice_points()``, ``forward(x, arch)`` and
    ``derive(arch_weights) -> genotype``; genotypes have ``to_dict()`` and ``str()``.
    ``genotype_from_text`` reads the space's one-line text form (e.g. DARTS' ``Genotype(...)``,
    NAS-Bench-201's ``|op~j|+...``), where it has one.
    ``build_network(genotype, *, num_classes, **options)`` builds the derived network to train
    from scratch; its option defaults are the space's evaluation protocol. That network has a
    ``drop_path_prob`` attribute, and ``forward(x)`` returns ``(logits, logits_aux)`` where
    ``logits_aux`` is ``None`` unless an auxiliary head is active (training mode). ``None``
    means the space has no derived network yet.
    """

    build_supernet: Callable[..., nn.Module]
    genotype_from_dict: Callable[[Mapping[str, Any]], Any]
    build_network: Callable[..., nn.Module] | None = None
    genotype_from_text: Callable[[str], Any] | None = None


SPACES: dict[str, SpaceSpec] = {
    "darts": SpaceSpec(build_supernet=DartsSupernet, genotype_from_dict=DartsGenotype.from_dict,
                       build_network=DartsNetwork, genotype_from_text=DartsGenotype.from_text),
    "nb201": SpaceSpec(build_supernet=Nb201Supernet, genotype_from_dict=Nb201Genotype.from_dict,
                       build_network=Nb201Network, genotype_from_text=Nb201Genotype.from_text),
    "proxyless": SpaceSpec(build_supernet=ProxylessSupernet,
                           genotype_from_dict=ProxylessGenotype.from_dict,
                           build_network=ProxylessNetwork),
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


def create_network(name: str, genotype: Any, *, num_classes: int, **options: Any) -> nn.Module:
    """Build the derived network of ``genotype`` (a genotype of space ``name``).

    Options set to ``None`` are dropped, so the builder's defaults (the evaluation protocol) apply.
    """
    spec = get_space(name)
    if spec.build_network is None:
        ready = [space for space in list_spaces() if SPACES[space].build_network is not None]
        raise SpaceError(f"space '{name}' has no derived network to train yet; "
                         f"retrain a genotype of: {', '.join(ready)}")
    try:
        return spec.build_network(genotype, num_classes=num_classes,
                                  **{k: v for k, v in options.items() if v is not None})
    except TypeError as err:
        raise SpaceError(f"bad option for the network of space '{name}': {err}") from None
