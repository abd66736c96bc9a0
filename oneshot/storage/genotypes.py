"""Find a genotype wherever a user points: run dir, genotype file, checkpoint, text, published name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oneshot.storage.torchfile import UnreadableFileError, load_weights_only
from supernets.darts.published import get_published, list_published
from supernets.errors import GenotypeError, SpaceError
from supernets.genotype_file import load_genotype_file
from supernets.spaces import get_space, list_spaces


@dataclass(frozen=True)
class LoadedGenotype:
    """A genotype object of its space, with the metadata that came with it."""

    space: str
    genotype: Any
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def _from_space(space: str, genotype: dict[str, Any], meta: dict[str, Any], source: str) -> LoadedGenotype:
    try:
        spec = get_space(space)
    except SpaceError as err:
        raise GenotypeError(f"{source}: {err}") from None
    try:
        return LoadedGenotype(space, spec.genotype_from_dict(genotype), dict(meta), source)
    except GenotypeError as err:
        raise GenotypeError(f"{source}: {err}") from None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a Lightning checkpoint safely (``weights_only=True``); errors are one line."""
    try:
        return load_weights_only(path)
    except UnreadableFileError as err:
        raise GenotypeError(f"cannot read checkpoint '{path}': {err}; "
                            "pass a checkpoint written by oneshot.train") from None


def _from_checkpoint(path: Path) -> LoadedGenotype:
    record = load_checkpoint(path).get("oneshot")
    if not isinstance(record, dict) or "space" not in record or "genotype" not in record:
        raise GenotypeError(f"checkpoint '{path}' holds no oneshot search state; "
                            "pass a checkpoint written by oneshot.train")
    return _from_space(record["space"], record["genotype"], record.get("meta", {}), str(path))


def _from_file(path: Path) -> LoadedGenotype:
    if path.suffix == ".ckpt":
        return _from_checkpoint(path)
    head = path.read_bytes()[:1].strip() if path.stat().st_size else b""
    if path.suffix == ".json" or head == b"{":
        document = load_genotype_file(path)
        return _from_space(document.space, document.genotype, document.meta, str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise GenotypeError(f"'{path}' is not text; pass a genotype JSON file or a genotype's text form"
                            ) from None
    return from_text(text, str(path))


def from_text(text: str, source: str) -> LoadedGenotype:
    """Read a genotype's one-line text form, trying each space that has one."""
    problems = []
    for space in list_spaces():
        parse = get_space(space).genotype_from_text
        if parse is None:
            continue
        try:
            return LoadedGenotype(space, parse(text.strip()), {}, source)
        except GenotypeError as err:
            problems.append(f"{space}: {err}")
    raise GenotypeError(f"'{source}' is neither a genotype JSON file nor a genotype's text form "
                        f"({'; '.join(problems)})")


def load_genotype(source: str | Path) -> LoadedGenotype:
    """Load a genotype from a run dir, ``genotype.json``, ``.ckpt``, a text form (file or string) or a name.

    A run dir gives its ``genotype.json`` (or, for a search still running, its last checkpoint);
    a name that is not a path is looked up among the published genotypes (``DARTS_V2``, ...).
    """
    text = str(source)
    if text.lstrip().startswith(("Genotype(", "|")):
        return from_text(text, "the genotype given on the command line")
    path = Path(source)
    if path.is_dir():
        for candidate in (path / "genotype.json", path / "checkpoints" / "last.ckpt"):
            if candidate.is_file():
                return _from_file(candidate)
        raise GenotypeError(f"run dir '{path}' has neither genotype.json nor checkpoints/last.ckpt; "
                            "point to a directory written by oneshot.train")
    if path.is_file():
        return _from_file(path)
    try:
        genotype, meta = get_published(text)
    except GenotypeError:
        raise GenotypeError(f"no genotype at '{source}': not a file or run dir, a genotype's text "
                            f"form, nor a published genotype ({', '.join(list_published())})") from None
    return LoadedGenotype("darts", genotype, {**meta, "published": True}, text)
