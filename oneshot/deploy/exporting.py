"""Export a retrain run's network and check the file against PyTorch before keeping it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from oneshot.deploy.formats import MODEL_FILES, load_exported, require_onnx, write_model
from oneshot.deploy.network import load_trained_network

CHECK_BATCH = 8  # images of the comparison batch
CHECK_SEED = 0


class ExportMismatchError(RuntimeError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


@dataclass(frozen=True)
class ExportResult:
    """A written model file and how closely it reproduces PyTorch on the check batch."""

    path: Path
    fmt: str
    max_abs_diff: float
    allowed: float  # the largest difference accepted on this batch
    images: int  # of the check batch
    class_names: tuple[str, ...]


def export_run(run_dir: str | Path, fmt: str, out_dir: str | Path | None = None, *,
               tolerance: float = 1e-4) -> ExportResult:
    """Write ``MODEL_FILES[fmt]`` into ``out_dir`` (default the run dir) and compare its logits
    with PyTorch's on a seeded batch of uniform [0, 1) images.

    A difference above ``tolerance * max(1, largest |logit|)`` raises :class:`ExportMismatchError`
    and leaves no file behind.
    """
    if fmt == "onnx":
        require_onnx()  # before loading anything: a missing extra is answered at once
    trained = load_trained_network(run_dir)
    target = Path(out_dir if out_dir is not None else run_dir) / MODEL_FILES[fmt]
    target.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(CHECK_SEED)
    batch = torch.rand(CHECK_BATCH, *trained.input_shape, generator=generator)
    with torch.no_grad():
        reference = trained.model(batch)
    metadata = {"format_version": 1, "class_names": list(trained.class_names), **trained.meta}
    partial = target.with_name(f".partial.{target.name}")  # same suffix: same format
    try:
        write_model(trained.model, fmt, partial, batch[:2], metadata)
        exported = load_exported(partial).run(batch)
        diff = float((exported - reference).abs().max())
        allowed = tolerance * max(1.0, float(reference.abs().max()))
        if not diff <= allowed:  # also refuses NaN
            raise ExportMismatchError(
                f"the {fmt} model's logits differ from PyTorch's by up to {diff:.3g} on "
                f"{CHECK_BATCH} images (allowed {allowed:.3g}); not written: {target}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return ExportResult(target, fmt, diff, allowed, CHECK_BATCH, trained.class_names)
