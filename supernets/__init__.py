"""Search spaces in plain PyTorch: choices, supernets, genotypes and the networks they derive.

The public API for writing a space::

    from supernets import InputChoice, OpChoice, Supernet, check_space, register_op

See :mod:`supernets.supernet` for how a space is written. The names are imported on first use,
so that torch-free modules (``supernets.entry_points``) load without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "ChoiceGenotype": "supernets.choice_genotype",
    "InputChoice": "supernets.choices",
    "OpChoice": "supernets.choices",
    "Supernet": "supernets.supernet",
    "check_space": "supernets.contract",
    "register_op": "supernets.ops",
    "register_space": "supernets.spaces",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    """The public names, imported from their modules on first use (PEP 562)."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'supernets' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
