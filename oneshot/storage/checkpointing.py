"""Checkpoint files: written atomically, read with ``weights_only=True``, errors in one line."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from oneshot.errors import ConfigError
from oneshot.storage.files import write_atomic
from oneshot.storage.torchfile import UnreadableFileError, load_weights_only


def save_atomic(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``checkpoint`` to a temporary file beside ``path``, then rename it over ``path``."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_atomic(path, buffer.getvalue())


def load_checkpoint_file(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; a missing, truncated or foreign file raises a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint '{path}' not found; pass a run dir or a .ckpt written by oneshot.train")
    try:
        checkpoint = load_weights_only(path, map_location=map_location)
    except UnreadableFileError as err:
        raise ConfigError(f"cannot read checkpoint '{path}': {err}; resume from another checkpoint "
                          "of the search, or start it again") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"'{path}' is not a Lightning checkpoint; pass a .ckpt written by oneshot.train")
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with a temp-file-and-rename save and a ``weights_only`` load."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        save_atomic(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None
                        ) -> dict[str, Any]:
        return load_checkpoint_file(path, map_location=map_location or "cpu")
