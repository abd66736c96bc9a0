"""Published DARTS-space CIFAR-10 cells and their reported results (published_genotypes.json)."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from typing import Any

from supernets.darts.genotype import DartsGenotype
from supernets.errors import GenotypeError


def list_published() -> list[str]:
    """Names of the published genotypes, e.g. ``DARTS_V2``."""
    return list(_entries())


def get_published(name: str) -> tuple[DartsGenotype, dict[str, Any]]:
    """A published genotype and its meta (test error %, params M, search cost, paper, repository).

    Matching ignores case, ``-`` and ``_``, so ``pc-darts``, ``PC_DARTS`` and ``PCDARTS`` agree;
    reference-code aliases (``DARTS`` for ``DARTS_V2``, ``GDAS_V1`` for ``GDAS``) are accepted.
    """
    key = _normalize(name) if isinstance(name, str) else None
    for canonical, entry in _entries().items():
        if key in (_normalize(alias) for alias in [canonical, *entry["aliases"]]):
            return DartsGenotype.from_dict(entry["genotype"]), copy.deepcopy(entry["meta"])
    raise GenotypeError(f"unknown published genotype {name!r}; "
                        f"choose one of: {', '.join(list_published())}")


def _normalize(name: str) -> str:
    return name.upper().replace("-", "").replace("_", "")


@lru_cache(maxsize=1)
def _entries() -> dict[str, dict[str, Any]]:
    """The packaged data file, read once."""
    data = resources.files("supernets.darts").joinpath("published_genotypes.json")
    return json.loads(data.read_text(encoding="utf-8"))
