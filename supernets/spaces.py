"""Registry of search spaces: built-in, installed through an entry point, or named by class path.

A space is a :class:`~supernets.supernet.Supernet` subclass. It is found by

- its registered name (``darts``, ``nb201``, ``proxyless``, or :func:`register_space`);
- an entry point of the group ``oneshot.spaces`` of an installed package, whose name is the
  space's name and whose object is the class (``tricell = "tricell.space:TriCell"``); loading it
  also runs the package's module, where it may register operations and renderers;
- its class path ``package.module.ClassName`` (what Hydra's ``_target_`` holds), for a space that
  is not registered.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping

from torch import nn

from supernets.darts.derived import DartsNetwork
from supernets.entry_points import ENTRY_POINT_GROUP
from supernets.darts.search import DartsSupernet
from supernets.errors import GenotypeError, SpaceError
from supernets.fixed import FixedNetwork
from supernets.nb201.search import Nb201Supernet
from supernets.proxyless.search import ProxylessSupernet
from supernets.supernet import Supernet

# Constructor arguments that come from the data, not from the space's options.
DATA_OPTIONS = ("num_classes", "in_channels")


@dataclass(frozen=True)
class SpaceSpec:
    """A search space: its supernet class and, where it has one, its own evaluation network.

    ``network(genotype, *, num_classes, **options)`` builds the network a genotype is retrained
    as, with option defaults that are the space's evaluation protocol (DARTS: 36 channels, 20
    cells, auxiliary head). Without one, the space's fixed network is retrained.
    """

    supernet: type[Supernet]
    network: Callable[..., nn.Module] | None = None

    def genotype_from_dict(self, data: Mapping[str, Any]) -> Any:
        """Read the JSON form of a genotype of this space."""
        return self.supernet.genotype_class.from_dict(data)

    @property
    def genotype_from_text(self) -> Callable[[str], Any] | None:
        """The reader of the space's one-line text form, or ``None`` when it cannot be read."""
        return getattr(self.supernet.genotype_class, "from_text", None)

    def options(self) -> dict[str, Any]:
        """The supernet's keyword options with their defaults (without the data's)."""
        return constructor_defaults(self.supernet)


SPACES: dict[str, SpaceSpec] = {
    "darts": SpaceSpec(DartsSupernet, network=DartsNetwork),
    "nb201": SpaceSpec(Nb201Supernet),
    "proxyless": SpaceSpec(ProxylessSupernet),
}
_ENTRY_POINTS_LOADED: list[bool] = []


def register_space(name: str, supernet: type[Supernet], *,
                   network: Callable[..., nn.Module] | None = None) -> None:
    """Register ``supernet`` (a :class:`Supernet` subclass) as space ``name``."""
    if not isinstance(supernet, type) or not issubclass(supernet, Supernet):
        raise SpaceError(f"space '{name}' must be a subclass of supernets.Supernet, "
                         f"got {supernet!r}")
    if not isinstance(name, str) or not name.isidentifier():
        raise SpaceError(f"a space name must be an identifier such as 'tricell', got {name!r}")
    known = SPACES.get(name)
    if known is not None and known.supernet is not supernet:
        raise SpaceError(f"space name '{name}' is taken by {_class_path(known.supernet)}; "
                         "choose another name")
    SPACES[name] = SpaceSpec(supernet, network=network)


def _load_entry_points() -> None:
    """Register every installed package's spaces (once per process)."""
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED.append(True)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in SPACES:
            continue
        try:
            supernet = entry.load()
        except Exception as err:  # whatever a plugin raises, the user gets one line
            raise SpaceError(f"cannot load space '{entry.name}' from {entry.value}: {err}; "
                             "reinstall or uninstall the package that provides it") from None
        register_space(entry.name, supernet)


def list_spaces() -> list[str]:
    """Names of the registered search spaces (built-in and installed)."""
    _load_entry_points()
    return sorted(SPACES)


def space_name(supernet: type[Supernet]) -> str:
    """The name a space class is registered under, else its class path."""
    for name in list_spaces():
        if SPACES[name].supernet is supernet:
            return name
    return _class_path(supernet)


def get_space(name: str | type[Supernet]) -> SpaceSpec:
    """The space ``name`` (a registered name, a class path or the class itself); else a one-line
    SpaceError."""
    if isinstance(name, type) and issubclass(name, Supernet):
        registered = [spec for spec in SPACES.values() if spec.supernet is name]
        return registered[0] if registered else SpaceSpec(name)
    if not isinstance(name, str):
        raise SpaceError(f"a space is named by a string or a Supernet subclass, got {name!r}")
    _load_entry_points()
    if name in SPACES:
        return SPACES[name]
    if "." in name:
        return SpaceSpec(_import_space(name))
    raise SpaceError(f"unknown space '{name}'; choose one of: {', '.join(list_spaces())}, "
                     "or give a Supernet subclass as package.module.ClassName")


def _import_space(path: str) -> type[Supernet]:
    module_name, _, class_name = path.replace(":", ".").rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise SpaceError(f"cannot import space class '{path}': {err}; check the module path and "
                         "that its package is installed") from None
    if not isinstance(cls, type) or not issubclass(cls, Supernet):
        raise SpaceError(f"'{path}' is not a search space; give a subclass of supernets.Supernet")
    return cls


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def constructor_defaults(cls: type) -> dict[str, Any]:
    """The keyword arguments of ``cls`` with their defaults, without the data's options."""
    options = {}
    for parameter in inspect.signature(cls.__init__).parameters.values():
        if parameter.default is inspect.Parameter.empty or parameter.name in DATA_OPTIONS:
            continue
        value = parameter.default
        options[parameter.name] = list(value) if isinstance(value, tuple) else value
    return options


def create_supernet(name: str, **kwargs: Any) -> Supernet:
    """Build the supernet of space ``name`` from its options."""
    spec = get_space(name)
    try:
        return spec.supernet(**kwargs)
    except TypeError as err:
        raise SpaceError(f"bad option for space '{name}': {err}") from None


def create_network(name: str | type[Supernet], genotype: Any, *, num_classes: int,
                   space_options: Mapping[str, Any] | None = None,
                   **options: Any) -> nn.Module:
    """Build the network ``genotype`` (of space ``name``) is retrained as, with fresh weights.

    The space's own evaluation network where it has one; else its fixed network, built with the
    options the search used (``space_options``, adjusted by the space) overridden by
    ``options``. Options set to ``None`` are dropped, so the defaults apply.
    """
    spec = get_space(name)
    chosen = {k: v for k, v in options.items() if v is not None}
    try:
        if spec.network is not None:
            return spec.network(genotype, num_classes=num_classes, **chosen)
        fixed_options = {**spec.supernet.fixed_network_options(genotype, space_options or {}),
                         **chosen}
        return FixedNetwork(spec.supernet.fixed_network(genotype, num_classes=num_classes,
                                                        **fixed_options))
    except TypeError as err:
        raise SpaceError(f"bad option for the network of space '{name}': {err}") from None
    except GenotypeError as err:
        raise GenotypeError(f"the genotype does not fit space '{name}': {err}") from None
