"""The genotype file: one derived architecture as JSON, independent of its search space.

Layout: ``{"format_version": 1, "space": "darts", "genotype": {...}, "meta": {...}}`` where
``genotype`` is the space's own dict form and ``meta`` holds free-form provenance. This module
gives the text and reads it back; ``oneshot.storage.files.save_genotype_file`` writes it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from supernets.errors import GenotypeError

FORMAT_VERSION = 1
_FIELDS = ("format_version", "space", "genotype", "meta")
_JSON_NAMES = {int: "integer", str: "string", dict: "object"}


@dataclass(frozen=True)
class GenotypeFile:
    """The contents of a genotype file."""

    space: str
    genotype: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


def genotype_file_text(*, space: str, genotype: Mapping[str, Any],
                       meta: Mapping[str, Any] | None = None, what: str = "the genotype") -> str:
    """The genotype file's exact text (indented JSON and a final newline), as
    ``oneshot.storage.files.save_genotype_file`` writes it and :func:`load_genotype_file` reads it.

    ``what`` names the output in error messages (e.g. ``"'genotype.json'"``).
    """
    if not isinstance(space, str) or not space:
        raise GenotypeError(
            f"cannot save {what}: space must be a non-empty string, got {space!r}")
    if not isinstance(genotype, Mapping) or not isinstance(meta, (Mapping, type(None))):
        raise GenotypeError(f"cannot save {what}: genotype and meta must be dicts "
                            "(e.g. DartsGenotype.to_dict()), got "
                            f"{type(genotype).__name__} and {type(meta).__name__}")
    document = {"format_version": FORMAT_VERSION, "space": space,
                "genotype": dict(genotype), "meta": dict(meta or {})}
    try:
        return json.dumps(document, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:
        raise GenotypeError(
            f"cannot save {what}: genotype and meta must hold only JSON values ({err})") from err


def load_genotype_file(path: str | os.PathLike[str]) -> GenotypeFile:
    """Read and check a genotype file; any problem raises a one-line :class:`GenotypeError`."""
    path = Path(path)
    if not path.is_file():
        raise GenotypeError(f"genotype file '{path}' not found; check the path")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise GenotypeError(
            f"genotype file '{path}' is not UTF-8 text; pass a JSON genotype file") from err
    except json.JSONDecodeError as err:
        raise GenotypeError(f"genotype file '{path}' is not valid JSON (line {err.lineno} column "
                            f"{err.colno}: {err.msg}); pass a JSON genotype file") from err
    if not isinstance(document, dict):
        raise GenotypeError(f"genotype file '{path}' must hold a JSON object with fields "
                            f"{', '.join(_FIELDS)}; got {type(document).__name__}")
    unknown = sorted(set(document) - set(_FIELDS))
    if unknown:
        raise GenotypeError(f"genotype file '{path}' has unknown field(s) {', '.join(unknown)}; "
                            f"allowed fields: {', '.join(_FIELDS)}")
    version = _field(path, document, "format_version", int)
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise GenotypeError(f"genotype file '{path}' has format_version {version!r}, but this "
                            f"version of oneshot reads format_version {FORMAT_VERSION}; "
                            "re-export the genotype")
    space = _field(path, document, "space", str)
    if not space:
        raise GenotypeError(f"genotype file '{path}': field 'space' is empty; "
                            "name the search space, e.g. \"darts\"")
    genotype = _field(path, document, "genotype", dict)
    meta = document.get("meta", {})
    if not isinstance(meta, dict):
        raise GenotypeError(f"genotype file '{path}': field 'meta' must be a JSON object, "
                            f"got {type(meta).__name__}")
    return GenotypeFile(space=space, genotype=genotype, meta=meta)


def _field(path: Path, document: dict[str, Any], name: str, kind: type) -> Any:
    """A required top-level field of ``kind``, or a GenotypeError naming it."""
    if name not in document:
        raise GenotypeError(f"genotype file '{path}': field '{name}' is missing")
    value = document[name]
    if not isinstance(value, kind):
        raise GenotypeError(f"genotype file '{path}': field '{name}' must be a JSON "
                            f"{_JSON_NAMES[kind]}, got {type(value).__name__}")
    return value
