"""Measure a latency table: ``python -m oneshot.latency space=proxyless out=PATH``; or time an
exported model: ``python -m oneshot.latency model=FILE`` (also ``--model FILE``).

Times every candidate of every choice point at the input shape it sees in the supernet, on the
current device (eval mode, ``warmup`` untimed runs, the median of ``repeats`` timed runs), and
writes ``{"device", "space", "unit": "ms", "entries": {label: {candidate: ms}}, "meta"}``, with
the space options and input size in ``meta``. The search's ``experiment=`` presets choose the same
space options here (``experiment=quick_proxyless out=PATH`` measures that search's space).

``model=FILE`` times a model written by ``python -m oneshot.export --format onnx|torchscript``
(onnxruntime for ``.onnx``, ``torch.jit`` otherwise) with the same protocol, at the input size
recorded in the file and a batch of ``batch_size`` uniform [0, 1) images.
"""

from __future__ import annotations

import functools
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from omegaconf import DictConfig, OmegaConf

from oneshot import errors
from oneshot.commandline.checks import check_output_file, quiet_on_broken_pipe, validate_overrides
from oneshot.errors import ConfigError

if TYPE_CHECKING:  # torch and the spaces are imported after the command line was checked
    import torch

    from oneshot.deploy.formats import ExportedModel
    from oneshot.tables.cost import CostTable


def device_name(device: torch.device) -> str:
    """A readable name of ``device``: the GPU model, or the CPU model and thread count."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"cpu: {model} ({torch.get_num_threads()} threads)"


def _device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") or (name == "cuda" and not torch.cuda.is_available()):
        raise ConfigError(f"device '{name}' is not available; choose cpu, cuda (with a GPU) or auto")
    return torch.device(name)


def _positive(cfg: DictConfig, key: str, low: int = 1) -> int:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key} must be an integer >= {low}, got {value!r}")
    return value


def measure_table(cfg: DictConfig) -> CostTable:
    """The latency table of ``cfg.space`` measured as ``cfg`` says (see ``latency.yaml``)."""
    import torch

    from oneshot.tables.cost import CostTable
    from supernets.cost import candidate_costs, latency_ms
    from supernets.spaces import create_supernet

    batch, size = _positive(cfg, "batch_size"), _positive(cfg, "image_size")
    warmup, repeats = _positive(cfg, "warmup", 0), _positive(cfg, "repeats")
    if cfg.threads is not None:
        torch.set_num_threads(_positive(cfg, "threads"))
    device = _device(cfg.device)
    options = {k: v for k, v in OmegaConf.to_container(cfg.space, resolve=True).items()
               if k != "name"}
    supernet = create_supernet(cfg.space.name, **options).to(device)
    measure = functools.partial(latency_ms, warmup=warmup, repeats=repeats)
    entries = candidate_costs(supernet, (batch, 3, size, size), measure)
    meta: dict[str, Any] = {
        "input_size": [batch, 3, size, size], "warmup": warmup, "repeats": repeats,
        "statistic": "median", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "space_options": options}
    return CostTable(space=cfg.space.name, device=device_name(device), unit="ms",
                     entries=entries, meta=meta)


def time_model(cfg: DictConfig) -> tuple[ExportedModel, list[int], float]:
    """The exported model ``cfg.model``, the input size it was timed at and its median ms."""
    import torch

    from oneshot.deploy.formats import load_exported
    from oneshot.deploy.timing import median_ms

    batch = _positive(cfg, "batch_size")
    warmup, repeats = _positive(cfg, "warmup", 0), _positive(cfg, "repeats")
    threads = None if cfg.threads is None else _positive(cfg, "threads")
    if threads is not None:
        torch.set_num_threads(threads)
    device = _device(cfg.device)
    model = load_exported(cfg.model, device=device, threads=threads)
    recorded = model.metadata.get("input_size")
    if not (isinstance(recorded, list) and len(recorded) == 4):
        raise ConfigError(f"'{cfg.model}' does not record its input size; export it with "
                          "`python -m oneshot.export RETRAIN_RUN_DIR --format onnx|torchscript`")
    size = [batch, *recorded[1:]]
    x = torch.rand(*size, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    return model, size, median_ms(lambda: model.run(x), warmup=warmup, repeats=repeats, sync=sync)


def model_flag(args: Sequence[str]) -> list[str]:
    """``--model FILE`` and ``--model=FILE`` as the override ``model=FILE``; others unchanged."""
    out: list[str] = []
    rest = iter(args)
    for arg in rest:
        if arg == "--model":
            value = next(rest, None)
            if value is None:
                raise ConfigError("--model needs a file: --model FILE (or model=FILE)")
            out.append(f"model={value}")
        else:
            out.append("model=" + arg[len("--model="):] if arg.startswith("--model=") else arg)
    return out


@quiet_on_broken_pipe
def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (2 with a one-line error for bad input)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        cfg = validate_overrides("oneshot.conf.latency", "latency", model_flag(args))
        if cfg.model is not None:
            model, size, ms = time_model(cfg)
        else:
            check_output_file(Path(cfg.out), "out")
            table = measure_table(cfg)
            table.save(cfg.out)
    except ConfigError as err:  # matched first: a bad option is reported without importing torch
        print(f"error: {err}", file=sys.stderr)
        return 2
    except errors.USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if cfg.model is not None:
        print(f"model {model.path} ({model.fmt}) on {device_name(model.device)}: median "
              f"{ms:.3f} ms per batch of {size[0]} ({'x'.join(map(str, size[1:]))}), "
              f"{cfg.warmup} warm-up and {cfg.repeats} timed runs")
        return 0
    fastest = sum(min(row.values()) for row in table.entries.values())
    slowest = sum(max(row.values()) for row in table.entries.values())
    print(f"{len(table.entries)} choice points of space '{table.space}' on {table.device}: "
          f"{fastest:.2f} to {slowest:.2f} ms over the searchable blocks")
    print(f"table: {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
