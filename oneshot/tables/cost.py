"""The cost lookup table of a search space: a latency (or FLOPs) per block and candidate.

JSON: ``{"format_version": 1, "space": "proxyless", "device": "...", "unit": "ms",
"entries": {"block_3": {"mb3_k5": 0.21, ...}, ...}, "meta": {...}}``. ``meta`` records what the
table was measured for: ``space_options`` (every option of the space but its name) and
``input_size`` (``[batch, channels, height, width]``); a search refuses a table whose space,
options or image shape differ from its own (:func:`check_measured_for`, :func:`check_input_shape`).
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
from oneshot.storage.files import write_atomic

FORMAT_VERSION = 1
UNITS = ("ms", "MFLOPs")
_FIELDS = ("format_version", "space", "device", "unit", "entries", "meta")
_MEASURE = "measure one with `python -m oneshot.latency space=NAME out=PATH`"
_REMEASURE = ("re-measure it with the search's space options: `python -m oneshot.latency "
              "experiment=NAME out=PATH` with the search's experiment=, plus the same space.* "
              "overrides")


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


def check_measured_for(table: CostTable, path: str | os.PathLike[str], *, space: str,
                       options: Mapping[str, Any]) -> None:
    """Refuse (one line) a table measured for another space or other space ``options``.

    A table that does not record its space options (written before they were recorded) is
    refused too: its entries could match the choice points and still time other widths.
    """
    if table.space != space:
        raise ConfigError(f"cost table '{path}' was measured for space '{table.space}', not "
                          f"'{space}'; {_REMEASURE}")
    measured = table.meta.get("space_options")
    if not isinstance(measured, dict):
        raise ConfigError(f"cost table '{path}' does not record the space options it was measured "
                          f"for (an older table); {_REMEASURE}")
    differing = [f"{key} (table {_show(measured, key)}, search {_show(options, key)})"
                 for key in sorted(set(measured) | set(options))
                 if measured.get(key, _ABSENT) != options.get(key, _ABSENT)]
    if differing:
        raise ConfigError(f"cost table '{path}' was measured for other {space} space options: "
                          f"{'; '.join(differing)}; {_REMEASURE}")


def check_input_shape(table: CostTable, path: str | os.PathLike[str],
                      image_shape: Sequence[int]) -> None:
    """Refuse (one line) a table measured at another image shape ``(C, H, W)``."""
    measured = table.meta.get("input_size")
    if not isinstance(measured, list) or len(measured) != 4:
        raise ConfigError(f"cost table '{path}' does not record the input size it was measured at "
                          f"(an older table); {_REMEASURE}")
    if list(measured[1:]) != list(image_shape):
        raise ConfigError(f"cost table '{path}' was measured on {_shape(measured[1:])} images, the "
                          f"search's are {_shape(image_shape)}; re-measure it with "
                          f"`python -m oneshot.latency image_size={image_shape[-1]} ...` and the "
                          "search's space options")


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


_ABSENT = object()


def _show(options: Mapping[str, Any], key: str) -> str:
    return repr(options[key]) if key in options else "not set"


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(n) for n in shape)
