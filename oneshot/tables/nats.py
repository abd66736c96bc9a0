"""NATS-Bench topology results (the NAS-Bench-201 cell space), read through ``nats_bench``.

The official file comes in two layouts: one ``NATS-tss-v1_0-3ffb9.pickle.pbz2`` file (a dict of
``meta_archs``, ``arch2infos`` and ``evaluated_indexes``) or the fast-mode directory
``NATS-tss-v1_0-3ffb9-simple/`` (``meta.pickle.pbz2`` with ``meta_archs``, one
``<index>.pickle.pbz2`` per architecture). Both are bz2-compressed pickles; they are read with an
unpickler that builds only plain containers and numbers (a file that asks for anything else is
refused), then handed to ``nats_bench`` as a dict, which does the query.

The query is the one the benchmark's papers report: the 200-epoch training (``hp="200"``), averaged
over its seeds (``is_random=False``); the package's defaults are the 12-epoch table and one random
seed. The test accuracies are CIFAR-10's test set (``ori-test``, after training on train+valid),
CIFAR-100's and ImageNet16-120's test halves (``x-test``).
"""

from __future__ import annotations

import bz2
import pickle
from pathlib import Path
from typing import Any

from oneshot.errors import ConfigError

EPOCHS = "200"
"""The benchmark's full training schedule, the results NAS papers quote (the package's
default is "12")."""

DATASETS = {"cifar10_test": "cifar10", "cifar100_test": "cifar100",
            "imagenet16_120_test": "ImageNet16-120"}
"""Result column -> the package's dataset name; its ``test-accuracy`` is that column."""

SUFFIX = ".pickle.pbz2"

_ALLOWED = {("collections", "OrderedDict"), ("collections", "defaultdict"),
            ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"),
            ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar")}
"""What the benchmark's pickles may build besides dicts, lists, tuples, strings and numbers."""


class _PlainUnpickler(pickle.Unpickler):
    """An unpickler that refuses every class and function outside ``_ALLOWED``."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a results file "
                                         "does not hold")
        return super().find_class(module, name)


def _load(path: Path) -> Any:
    """One bz2-compressed pickle of plain data, or a one-line ConfigError naming the file."""
    try:
        with bz2.open(path, "rb") as handle:
            return _PlainUnpickler(handle).load()
    except FileNotFoundError:
        raise ConfigError(f"NATS-Bench file '{path}' not found; set benchmark.nats to "
                          f"NATS-tss-v1_0-3ffb9{SUFFIX} or its -simple directory") from None
    except (OSError, EOFError, ValueError, pickle.UnpicklingError, AttributeError,
            ImportError) as err:
        raise ConfigError(f"cannot read NATS-Bench file '{path}' ({err}); pass the official "
                          f"topology file (*{SUFFIX}) or its fast-mode -simple directory, the "
                          "ones without trained weights") from None


def _nats_bench() -> Any:
    """The ``nats_bench`` package, or a one-line ConfigError saying how to install it."""
    try:
        import nats_bench
    except ImportError:
        raise ConfigError("benchmark.nats needs the nats_bench package; install it with "
                          "pip install -e \".[bench]\" (or pip install nats_bench)") from None
    return nats_bench


class NatsTable:
    """NATS-Bench topology results per architecture string; ``lookup`` gives one architecture's
    test accuracies (percent) in ``columns``, 200 epochs, mean over the benchmark's seeds."""

    columns = tuple(DATASETS)

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._package = _nats_bench()
        root = Path(path)
        if root.is_dir():
            meta = _load(root / f"meta{SUFFIX}")
            self._records: dict[int, Any] | None = None
        else:
            meta = _load(root)
            self._records = self._field(meta, "arch2infos", dict)
        self._archs = self._field(meta, "meta_archs", list)
        self._index = {arch: i for i, arch in enumerate(self._archs) if isinstance(arch, str)}
        self._cache: dict[str, dict[str, float | None]] = {}

    def _field(self, data: Any, key: str, kind: type) -> Any:
        """``data[key]`` of type ``kind``, or a ConfigError: the file is not the benchmark's."""
        value = data.get(key) if isinstance(data, dict) else None
        if not isinstance(value, kind):
            raise ConfigError(f"NATS-Bench file '{self.path}' has no '{key}' {kind.__name__}; "
                              "pass the official topology file or its fast-mode directory")
        return value

    def _record(self, index: int, arch: str) -> Any:
        """The architecture's results per training schedule (``{"12": ..., "200": ...}``)."""
        if self._records is not None:
            record = self._records.get(index)
        else:
            folder = Path(self.path)
            name = next((folder / n for n in (f"{index:06d}{SUFFIX}", f"{index}{SUFFIX}")
                         if (folder / n).is_file()), None)
            record = None if name is None else _load(name)
        if not isinstance(record, dict) or EPOCHS not in record:
            raise ConfigError(f"NATS-Bench file '{self.path}' holds no {EPOCHS}-epoch results "
                              f"for architecture {index} '{arch}'; pass the complete "
                              "benchmark file")
        return record

    def lookup(self, arch: str) -> dict[str, float | None]:
        """Test accuracy per column of architecture string ``arch`` (a ConfigError when the
        benchmark does not hold it: NATS-Bench has every cell of space=nb201)."""
        arch = arch.strip()
        if arch not in self._cache:
            self._cache[arch] = self._query(arch)
        return self._cache[arch]

    def missing_message(self, arch: str) -> str:
        """One line saying ``arch`` is not a NATS-Bench topology."""
        return (f"architecture '{arch}' is not in NATS-Bench file '{self.path}' "
                f"({len(self._index)} architectures); benchmark.nats looks up cells of space=nb201")

    def _query(self, arch: str) -> dict[str, float | None]:
        if arch not in self._index:
            raise ConfigError(self.missing_message(arch))
        index = self._index[arch]
        record = self._record(index, arch)
        try:
            api = self._package.create({"meta_archs": self._archs, "arch2infos": {index: record},
                                        "evaluated_indexes": [index]}, "topology", verbose=False)
            return {column: _test_accuracy(api, index, dataset)
                    for column, dataset in DATASETS.items()}
        except (ValueError, TypeError, AttributeError, IndexError, ZeroDivisionError) as err:
            raise ConfigError(f"NATS-Bench file '{self.path}': the results of '{arch}' cannot "
                              f"be read ({type(err).__name__}: {err}); pass the official "
                              "file") from None


def _test_accuracy(api: Any, index: int, dataset: str) -> float | None:
    """The architecture's mean test accuracy on ``dataset`` after 200 epochs (``None`` when the
    file has no results for ``dataset``)."""
    try:
        info = api.get_more_info(index, dataset, hp=EPOCHS, is_random=False)
    except KeyError:
        return None
    value = info.get("test-accuracy")
    return None if value is None else float(value)


def load_nats_table(path: str | Path) -> NatsTable:
    """The NATS-Bench topology file (or fast-mode directory) at ``path``, checked."""
    return NatsTable(path)
