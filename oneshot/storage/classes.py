"""``classes.json`` in a search's or a retraining's run dir: the task's class names by label and
the normalization its inputs get.

``{"task": "imagefolder", "classes": ["cat", "dog", ...], "mean": [...], "std": [...]}``: entry
``i`` of ``classes`` names the network's output ``i``; an input image is scaled to [0, 1] and
normalized per channel with ``mean`` and ``std`` before the network sees it. Exports read it
(:func:`read_classes`) to label the deployed model's outputs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from oneshot.errors import ConfigError
from oneshot.storage.files import write_atomic

CLASSES_FILE = "classes.json"


def write_classes(run_dir: Path, *, task: str, classes: Sequence[str], mean: Sequence[float],
                  std: Sequence[float]) -> None:
    """Write ``run_dir/classes.json`` atomically."""
    document = {"task": task, "classes": list(classes), "mean": list(mean), "std": list(std)}
    write_atomic(run_dir / CLASSES_FILE, (json.dumps(document, indent=2) + "\n").encode("utf-8"))


def read_classes(run_dir: Path) -> list[str] | None:
    """The class names recorded in ``run_dir`` (None for a run dir made before they were)."""
    path = Path(run_dir) / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        classes = json.loads(path.read_text(encoding="utf-8"))["classes"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path} is unreadable ({type(err).__name__}); "
                          f"delete it or copy it from a good run") from None
    if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
        raise ConfigError(f"{path} does not hold a list of class names under 'classes'")
    return classes
