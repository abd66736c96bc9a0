"""Writing output files so that a crash never leaves half a file behind.

Every file oneshot writes goes through :func:`write_atomic` (genotype files through
:func:`save_genotype_file`); the decoded-image cache of ``tasks`` has its own writer, since that
package cannot depend on this one.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Mapping


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory, then rename.

    The file gets the usual permissions (``0o666`` less the umask), not ``mkstemp``'s ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_genotype_file(path: str | os.PathLike[str], *, space: str, genotype: Mapping[str, Any],
                       meta: Mapping[str, Any] | None = None) -> None:
    """Write a genotype file (the format of :mod:`supernets.genotype_file`) atomically.

    A genotype or meta that cannot be written raises a one-line ``GenotypeError`` and leaves any
    existing file as it was.
    """
    from supernets.genotype_file import genotype_file_text  # imports torch: only when writing

    text = genotype_file_text(space=space, genotype=genotype, meta=meta, what=f"'{path}'")
    write_atomic(path, text.encode("utf-8"))
