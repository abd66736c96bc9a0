"""Hydra configs for spaces that ship no YAML: installed plugins, spaces registered in Python and
classes named by path.

``space=tricell`` (a package's ``oneshot.spaces`` entry point) and ``space=pkg.module.Class``
(any :class:`~supernets.supernet.Supernet` subclass; Hydra's ``space._target_=pkg.module.Class``
is the same) get a ``space`` config node holding ``name`` (the registered name or the class
path, which is how genotype files find the space again) and the class's keyword options with
their defaults, so ``space.<option>=...`` overrides work as for the built-in spaces. A class's
``quick_options`` become its ``experiment=quick`` sizes.
"""

from __future__ import annotations

from importlib import resources
from importlib.metadata import entry_points
from typing import Sequence

from hydra.core.config_store import ConfigStore

from supernets.entry_points import ENTRY_POINT_GROUP

SEARCH_CONFIG_MODULE = "oneshot.conf.search"
TARGET_KEYS = ("space._target_", "+space._target_", "++space._target_")


def yaml_spaces() -> list[str]:
    """The spaces with a YAML file in the search config's ``space`` group."""
    folder = resources.files(SEARCH_CONFIG_MODULE) / "space"
    return sorted(f.name[:-5] for f in folder.iterdir() if f.name.endswith(".yaml"))


def installed_spaces() -> list[str]:
    """Names of the spaces installed packages declare (no package is imported)."""
    return sorted(entry.name for entry in entry_points(group=ENTRY_POINT_GROUP))


def target_as_choice(args: Sequence[str]) -> list[str]:
    """``space._target_=pkg.Class`` written as the equivalent choice ``space=pkg.Class``."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        out.append(f"space={value}" if sep and key in TARGET_KEYS else arg)
    return out


def chosen_class_paths(args: Sequence[str]) -> list[str]:
    """The class paths chosen as ``space=pkg.module.Class`` in ``args`` (sweeps included)."""
    paths = []
    for arg in target_as_choice(args):
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") == "space":
            paths += [v for v in value.split(",") if "." in v]
    return paths


def register_space_configs(args: Sequence[str] = (), *, registered: bool = True) -> list[str]:
    """Store a config node for every installed space (and, with ``registered``, every space
    registered in this process) without a YAML file and every class path chosen in ``args``;
    returns their names. Loading them imports their packages (and torch), only if there are any.

    The command line does this before composing; a program that registers a space in Python
    (:func:`supernets.register_space`) calls it before composing a config that names the space.
    """
    known = set(yaml_spaces())
    names = sorted(set(installed_spaces()) - known)
    if registered:
        from supernets.spaces import SPACES
        names = sorted(set(names) | (set(SPACES) - known))
    names += chosen_class_paths(args)
    if not names:
        return []
    from supernets.spaces import constructor_defaults, get_space

    store = ConfigStore.instance()
    for name in names:
        cls = get_space(name).supernet
        store.store(group="space", name=name, node={"name": name, **constructor_defaults(cls)})
        quick = dict(getattr(cls, "quick_options", {}) or {})
        if quick:
            store.store(group="experiment_space", name=f"quick_{name}", package="_global_",
                        node={"space": quick})
    return names
