"""Write a trained network as TorchScript or ONNX, and read either back to run it.

Both files carry the class names and the run's description (``meta``): TorchScript in an extra
file ``oneshot.json`` of its archive, ONNX in the model's metadata properties ``class_names`` and
``oneshot`` (JSON). ONNX needs the ``export`` extra (onnx, onnxruntime, onnxscript for the
``torch.export``-based exporter, the one torch 2.14 supports; its TorchScript-based one is
deprecated).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from oneshot.errors import ConfigError

MODEL_FORMATS = ("onnx", "torchscript")
MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
INSTALL_EXPORT = 'pip install -e ".[export]"'
INPUT_NAME, OUTPUT_NAME = "images", "logits"
EXTRA_FILE = "oneshot.json"  # inside a TorchScript archive


def require_onnx() -> tuple[Any, Any]:
    """The ``onnx`` and ``onnxruntime`` modules; else a one-line ConfigError naming the extra."""
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise ConfigError(f"ONNX needs the export extra ({err.name} is not installed): "
                          f"{INSTALL_EXPORT}") from None
    return onnx, onnxruntime


def model_format(path: str | Path) -> str:
    """``onnx`` for a ``.onnx`` file, else ``torchscript``."""
    return "onnx" if Path(path).suffix.lower() == ".onnx" else "torchscript"


def write_model(model: torch.nn.Module, fmt: str, path: Path, example: torch.Tensor,
                metadata: dict[str, Any]) -> None:
    """Write ``model`` (eval mode) traced on ``example`` to ``path``, batch size left free."""
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
            traced = torch.jit.trace(model, (example,))
            torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: json.dumps(metadata)})
        return
    onnx, _ = require_onnx()
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), dynamo=True, verbose=False,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=({0: batch},))
    proto = program.model_proto
    for key, value in (("class_names", json.dumps(metadata.get("class_names", []))),
                       ("oneshot", json.dumps(metadata))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save_model(proto, str(path), save_as_external_data=False)


@dataclass
class ExportedModel:
    """An exported model loaded for inference: ``run(x)`` gives the logits as a float32 tensor."""

    path: Path
    fmt: str
    device: torch.device
    run: Callable[[torch.Tensor], torch.Tensor]
    metadata: dict[str, Any]


def load_exported(path: str | Path, *, device: torch.device = torch.device("cpu"),
                  threads: int | None = None) -> ExportedModel:
    """Load an exported model: onnxruntime for ``.onnx``, ``torch.jit.load`` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model file '{path}' does not exist; write one with "
                          "`python -m oneshot.export RETRAIN_RUN_DIR --format onnx|torchscript`")
    if model_format(path) == "onnx":
        return _load_onnx(path, device, threads)
    extra = {EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra).eval()
    except RuntimeError as err:
        raise ConfigError(f"'{path}' is not a TorchScript model ({str(err).splitlines()[0]}); "
                          "pass a .onnx file or a TorchScript file from oneshot.export") from None

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x.to(device))

    return ExportedModel(path, "torchscript", device, run, _json(extra[EXTRA_FILE]))


def _load_onnx(path: Path, device: torch.device, threads: int | None) -> ExportedModel:
    _, ort = require_onnx()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError("device=cuda for an ONNX model needs onnxruntime with CUDA "
                              "(pip install onnxruntime-gpu); or use device=cpu")
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types for a bad file
        raise ConfigError(f"onnxruntime cannot load '{path}': {str(err).splitlines()[0]}") from None
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(session.run(None, {name: array})[0])

    metadata = _json(session.get_modelmeta().custom_metadata_map.get("oneshot", ""))
    return ExportedModel(path, "onnx", device, run, metadata)


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}

