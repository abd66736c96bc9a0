"""Read a file written by ``torch.save`` safely, saying what is wrong with one that cannot be read.

Files are read with ``weights_only=True`` (tensors and plain values, no code). When that fails,
torch's own message suggests loading the file with ``weights_only=False``, advice that would run
whatever code the file holds; the error here describes the file instead.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

ZIP_MAGIC = b"PK\x03\x04"  # how every file of torch.save's default (zip) format starts


class UnreadableFileError(ValueError):
    """A file that ``torch.load`` with ``weights_only=True`` cannot read; the message says why."""


def why_unreadable(path: Path, err: Exception) -> str:
    """What is wrong with ``path``, which ``torch.load`` with ``weights_only=True`` refused with ``err``."""
    if isinstance(err, OSError):
        return f"it cannot be opened ({err.strerror or err})"
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    with open(path, "rb") as handle:
        head = handle.read(len(ZIP_MAGIC))
    if head != ZIP_MAGIC:
        return "it is not a PyTorch checkpoint file (or it is damaged)"
    if not zipfile.is_zipfile(path):
        return f"the file is truncated or damaged ({size:,} bytes, its end is missing)"
    if isinstance(err, pickle.UnpicklingError):
        return ("it holds Python objects other than tensors and plain values, which oneshot never "
                "writes; it is not loaded, since loading such objects can run code")
    return "it is a zip archive but not a PyTorch checkpoint"


def load_weights_only(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> Any:
    """``torch.load`` of ``path`` with ``weights_only=True``; a file that cannot be read raises
    :class:`UnreadableFileError` with what is wrong with it."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for truncated, foreign or unsafe files
        raise UnreadableFileError(why_unreadable(path, err)) from None
