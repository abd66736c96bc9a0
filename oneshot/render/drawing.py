"""Graphs to files and pixels with Graphviz's ``dot`` program, and what to do when it is missing."""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Mapping

import graphviz
import numpy as np
from PIL import Image

from oneshot.errors import ConfigError
from oneshot.storage.files import write_atomic

IMAGE_FORMATS = ("svg", "png")
DIAGRAM_FORMATS = ("dot", *IMAGE_FORMATS)
INSTALL_HINT = ("install Graphviz: `sudo apt-get install graphviz` (Debian/Ubuntu), "
                "`brew install graphviz` (macOS) or `conda install -c conda-forge graphviz` "
                "(the `graphviz` pip package alone does not include the dot program)")


class GraphvizMissingError(RuntimeError):
    """Graphviz's ``dot`` program is not installed, so no SVG or PNG can be drawn."""

    def __init__(self) -> None:
        super().__init__("Graphviz's `dot` program was not found on PATH, so SVG/PNG diagrams "
                         f"cannot be drawn; {INSTALL_HINT}")


def dot_available() -> bool:
    """Whether Graphviz's ``dot`` program is on ``PATH``."""
    return shutil.which("dot") is not None


def draw(graph: graphviz.Digraph, fmt: str) -> bytes:
    """``graph`` drawn by ``dot`` as ``svg`` or ``png`` bytes; GraphvizMissingError without dot."""
    if fmt not in IMAGE_FORMATS:
        raise ConfigError(f"unknown image format '{fmt}'; "
                          f"choose one of: {', '.join(IMAGE_FORMATS)}")
    try:
        return graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise GraphvizMissingError() from None


def graph_pixels(graph: graphviz.Digraph) -> np.ndarray:
    """``graph`` drawn as an RGB image array (H, W, 3, uint8), e.g. for TensorBoard."""
    with Image.open(io.BytesIO(draw(graph, "png"))) as image:
        return np.asarray(image.convert("RGB")).copy()


def write_diagrams(graphs: Mapping[str, graphviz.Digraph], out_dir: Path, fmt: str, *,
                   prefix: str = "") -> list[Path]:
    """Write each graph as ``<out_dir>/<prefix><cell>.<fmt>``; ``dot`` is the source (no program).

    ``svg`` and ``png`` need Graphviz's ``dot`` program (GraphvizMissingError otherwise); nothing
    is written then.
    """
    if fmt not in DIAGRAM_FORMATS:
        raise ConfigError(f"unknown diagram format '{fmt}'; "
                         f"choose one of: {', '.join(DIAGRAM_FORMATS)}")
    contents = {cell: graph.source.encode("utf-8") if fmt == "dot" else draw(graph, fmt)
                for cell, graph in graphs.items()}
    paths = []
    for cell, data in contents.items():
        path = Path(out_dir) / f"{prefix}{cell}.{fmt}"
        write_atomic(path, data)
        paths.append(path)
    return paths
