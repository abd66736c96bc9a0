"""The cost lookup table of a search space: a latency (or FLOPs) per block and candidate.

JSON: ``{"format_version": 1, "space": "proxyless", "device": "...", "unit": "ms",
"entries": {"block_3": {"mb3_k5": 0.21, ...}, ...}, "meta": {...}}``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from oneshot.errors import ConfigError
from oneshot.files import write_atomic

FORMAT_VERSION = 1
UNITS = ("ms", "MFLOPs")
_FIELDS = ("format_version", "space", "device", "unit", "entries", "meta")
_MEASURE = "measure one with `python -m oneshot.latency space=NAME out=PATH`"


@dataclass(frozen=True)
class CostTable:
    """Cost of every candidate of every choice point, in ``unit``, measured on ``device``."""

    space: str
    device: str
    unit: str
    entries: dict[str, dict[str, float]]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {"format_version": FORMAT_VERSION, "space": self.space, "device": self.device,
                "unit": self.unit, "entries": self.entries, "meta": self.meta}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the table atomically (temporary file in the same directory, then rename)."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
        write_atomic(path, text.encode("utf-8"))

    def cost_vectors(self, choice_points: Mapping[str, Sequence[str]]) -> dict[str, torch.Tensor]:
        """``label -> costs`` in the candidates' order; a missing block or candidate raises."""
        vectors = {}
        for label, names in choice_points.items():
            row = self.entries.get(label)
            missing = [label] if row is None else [f"{label}/{n}" for n in names if n not in row]
            if missing:
                raise ConfigError(f"the {self.space} cost table has no entry for {missing[0]}; "
                                  f"{_MEASURE} with the search's space options")
            vectors[label] = torch.tensor([float(row[name]) for name in names])
        return vectors


def load_cost_table(path: str | os.PathLike[str]) -> CostTable:
    """Read and check a table file; any problem raises a one-line :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"cost table '{path}' not found; {_MEASURE}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"cost table '{path}' is not JSON ({type(err).__name__}); {_MEASURE}") \
            from None
    if not isinstance(document, dict) or sorted(document) != sorted(_FIELDS):
        raise ConfigError(f"cost table '{path}' must be a JSON object with fields "
                          f"{', '.join(_FIELDS)}; {_MEASURE}")
    if document["format_version"] != FORMAT_VERSION:
        raise ConfigError(f"cost table '{path}' has format_version "
                          f"{document['format_version']!r}, expected {FORMAT_VERSION}; {_MEASURE}")
    if document["unit"] not in UNITS:
        raise ConfigError(f"cost table '{path}': unit must be one of {', '.join(UNITS)}, "
                          f"got {document['unit']!r}")
    entries = document["entries"]
    if not isinstance(entries, dict) or not all(
            isinstance(row, dict) and all(_is_cost(v) for v in row.values())
            for row in entries.values()):
        raise ConfigError(f"cost table '{path}': entries must map each block to "
                          "{candidate: non-negative number}")
    return CostTable(space=str(document["space"]), device=str(document["device"]),
                     unit=document["unit"], entries=entries, meta=dict(document["meta"] or {}))


def expected_cost(probs: Mapping[str, torch.Tensor], costs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``sum over choice points of sum_i p_i * cost_i``: differentiable in the probabilities."""
    total = None
    for label, cost in costs.items():
        p = probs[label]
        term = (p * cost.to(device=p.device, dtype=p.dtype)).sum()
        total = term if total is None else total + term
    if total is None:
        raise ConfigError("the cost table covers no choice point")
    return total


def _is_cost(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and value >= 0
