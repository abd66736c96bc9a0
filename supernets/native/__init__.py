"""C kernels for the CPU, compiled on first use with the machine's C compiler.

Where torch's CPU kernel for an operation is many times slower than it needs to be (the weight
gradient of a dilated or 5x5 depthwise convolution: ``benchmarks/depthwise_backward.py``), a
kernel of ours is a C file beside this module. :func:`library` compiles it once per machine
(``$CC``, default ``cc``, with ``-O3 -march=native -fopenmp``) into the cache folder,
``$ONESHOT_CACHE_DIR/native`` (default ``~/.cache/oneshot/native``), named by a hash of the
source, the compiler, its flags and the CPU, and loads it with ctypes. Without a compiler, when
the build fails, or with ``ONESHOT_NATIVE_KERNELS=0``, :func:`library` returns None and callers
keep torch's kernel; the reason is given once, as a warning.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

SOURCES = Path(__file__).resolve().parent
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC")
SWITCH = "ONESHOT_NATIVE_KERNELS"
_LANES = {torch.float32: 8, torch.float64: 4}  # the kernels' vectors are 32 bytes

_loaded: dict[str, ctypes.CDLL | None] = {}
_reasons: dict[str, str] = {}


def library(name: str) -> ctypes.CDLL | None:
    """The compiled kernel ``name`` (``SOURCES/name.c``), or None where it cannot be had (see
    :func:`unavailable_reason`)."""
    if os.environ.get(SWITCH, "1") == "0":
        _reasons[name] = f"{SWITCH}=0"
        return None
    if name not in _loaded:
        try:
            _loaded[name] = _load(name)
        except (OSError, subprocess.SubprocessError) as err:
            _loaded[name] = None
            _reasons[name] = " ".join(str(err).split())[:300] or repr(err)
            warnings.warn(f"the C kernel '{name}' is not available ({_reasons[name]}); torch's "
                          "CPU kernel runs instead, slower (set CC to a C compiler, or "
                          f"{SWITCH}=0 to silence this)", RuntimeWarning, stacklevel=2)
    return _loaded[name]


def fills_vectors(x: torch.Tensor) -> bool:
    """Whether ``x`` is a float32 or float64 4-D CPU map whose channels fill whole vectors of
    the kernels (8 floats or 4 doubles)."""
    return (x.device.type == "cpu" and x.dim() == 4 and x.dtype in _LANES
            and x.shape[1] % _LANES[x.dtype] == 0)


def capturing_a_graph() -> bool:
    """Whether torch is recording a graph (``torch.jit.trace`` or ``script``, ``torch.compile``,
    ``torch.export``): a kernel called through ctypes would not be in it, so callers run
    torch's."""
    return (torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.compiler.is_compiling())


def pointer(tensor: torch.Tensor) -> ctypes.c_void_p:
    """The address of ``tensor``'s first element, for a kernel."""
    return ctypes.c_void_p(tensor.data_ptr())


def use_native_kernels(module: nn.Module, enabled: bool) -> None:
    """Let every submodule of ``module`` that can use the C kernels (its class has a ``native``
    attribute: the depthwise convolutions and the pools) use them (``True``) or keep torch's
    kernels throughout, for comparisons."""
    for child in module.modules():
        if hasattr(type(child), "native"):
            child.native = enabled


def unavailable_reason(name: str) -> str | None:
    """Why :func:`library` gave None for ``name`` (None when it has not, or has not been asked)."""
    return _reasons.get(name)


def forget() -> None:
    """Drop what :func:`library` loaded or failed to load, so that the next call tries again
    (after ``CC`` or the switch changed)."""
    _loaded.clear()
    _reasons.clear()


def _load(name: str) -> ctypes.CDLL:
    """Load ``name``'s library; a cached file that does not load (cut short, say) is built
    again once."""
    path = _build(name)
    try:
        return ctypes.CDLL(str(path))
    except OSError:
        path.unlink(missing_ok=True)
        return ctypes.CDLL(str(_build(name)))


def cache_dir() -> Path:
    """Where compiled kernels are kept."""
    root = os.environ.get("ONESHOT_CACHE_DIR")
    if root:
        return Path(root) / "native"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "oneshot" / "native"


def _build(name: str) -> Path:
    """The shared library of ``name``: from the cache, else compiled into it (atomically, so
    that processes building at once each get a whole file), replacing older builds of it."""
    source = SOURCES / f"{name}.c"
    compiler = shlex.split(os.environ.get("CC", "cc"))
    key = hashlib.sha256(b"\0".join([source.read_bytes(), " ".join(compiler + list(FLAGS)).encode(),
                                     _cpu_signature().encode()])).hexdigest()[:16]
    target = cache_dir() / f"{name}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{name}-", suffix=".so", dir=target.parent)
    os.close(handle)
    try:
        result = subprocess.run([*compiler, *FLAGS, "-o", partial, str(source)],
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise OSError(f"{compiler[0]} exited with {result.returncode}: "
                          f"{(result.stderr or result.stdout).strip() or 'no output'}")
        os.replace(partial, target)
        for stale in target.parent.glob(f"{name}-*.so"):  # builds of older sources or flags
            if stale != target:
                stale.unlink(missing_ok=True)
    except FileNotFoundError as err:
        raise OSError(f"no C compiler '{compiler[0]}' ({err.strerror})") from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target


def _cpu_signature() -> str:
    """The machine and its CPU's features: a library built with -march=native runs there only."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return f"{platform.machine()} {platform.processor()} {flags}"
