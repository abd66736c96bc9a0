"""A table of benchmark results (e.g. NAS-Bench-201 accuracies) keyed by architecture string.

The CSV has a header row, one column of architecture strings in the search space's text form
(NAS-Bench-201: ``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...|``) and one or more
numeric result columns. Empty cells are missing values. ``ResultTable`` is what a search needs
of any table of results (this CSV, or NATS-Bench in ``oneshot.tables.nats``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from oneshot.errors import ConfigError


class ResultTable(Protocol):
    """Benchmark results per architecture string, as a search logs them (``benchmark/<column>``)."""

    columns: tuple[str, ...]

    def lookup(self, arch: str) -> dict[str, float | None] | None:
        """The results of architecture string ``arch`` (``None`` when the table lacks it)."""

    def missing_message(self, arch: str) -> str:
        """One line saying ``arch`` is not in the table."""


@dataclass(frozen=True)
class BenchmarkTable:
    """Result columns per architecture string; ``lookup`` gives one architecture's row."""

    path: str
    arch_column: str
    columns: tuple[str, ...]
    rows: dict[str, dict[str, float | None]]

    def lookup(self, arch: str) -> dict[str, float | None] | None:
        """The results of architecture string ``arch`` (``None`` when the table lacks it)."""
        return self.rows.get(arch.strip())

    def missing_message(self, arch: str) -> str:
        """One line saying ``arch`` is not in the table and what the table holds."""
        example = next(iter(self.rows))
        return (f"architecture '{arch}' is not in benchmark table '{self.path}' ({len(self.rows)} "
                f"architectures in column '{self.arch_column}', e.g. '{example}'); its benchmark "
                "results are not logged")


def load_benchmark_table(path: str | Path, *, arch_column: str = "arch",
                         columns: Sequence[str] | None = None) -> BenchmarkTable:
    """Read a CSV benchmark table; ``columns=None`` takes every numeric column besides
    ``arch_column``. Problems raise a one-line :class:`ConfigError` naming the file."""
    path = Path(path)
    name = f"benchmark table '{path}'"
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            records = [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise ConfigError(f"{name} not found; set benchmark.table to a CSV file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ConfigError(f"cannot read {name} ({err}); pass a UTF-8 CSV file") from None
    if arch_column not in header:
        raise ConfigError(f"{name} has no column '{arch_column}'; its columns are: "
                          f"{', '.join(header) or '(none)'}; set benchmark.arch_column=NAME")
    if not records:
        raise ConfigError(f"{name} has a header but no rows; pass a table of results")
    candidates = [c for c in header if c != arch_column] if columns is None else list(columns)
    unknown = [c for c in candidates if c not in header or c == arch_column]
    if unknown:
        raise ConfigError(f"{name} has no result column(s) {', '.join(unknown)}; its columns "
                          f"are: {', '.join(header)}; fix benchmark.columns")
    if columns is None:
        candidates = [c for c in candidates if _is_numeric(records, c)]
        if not candidates:
            raise ConfigError(f"{name} has no numeric column besides '{arch_column}'; add "
                              "result columns such as test_acc")
    rows: dict[str, dict[str, float | None]] = {}
    first_line: dict[str, int] = {}
    for line, row in records:
        arch = (row.get(arch_column) or "").strip()
        if not arch:
            raise ConfigError(f"{name} line {line}: column '{arch_column}' is empty; give every "
                              "row an architecture string")
        if arch in rows:
            raise ConfigError(f"{name} line {line} repeats architecture '{arch}' of line "
                              f"{first_line[arch]}; keep one row per architecture")
        rows[arch] = {c: _cell(name, line, c, row.get(c)) for c in candidates}
        first_line[arch] = line
    return BenchmarkTable(str(path), arch_column, tuple(candidates), rows)


def _number(text: str | None) -> float | None:
    """The cell as a float, ``None`` when empty; ValueError when not a finite number."""
    if text is None or not text.strip():
        return None
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not finite")
    return value


def _cell(name: str, line: int, column: str, text: str | None) -> float | None:
    """One result cell, or a ConfigError naming the table, line and column."""
    try:
        return _number(text)
    except ValueError:
        raise ConfigError(f"{name} line {line}: column '{column}' holds {text!r}, not a number; "
                          "fix the table or leave the column out of benchmark.columns") from None


def _is_numeric(records: Sequence[tuple[int, dict[str, str]]], column: str) -> bool:
    """Whether every cell of ``column`` is a number or empty, and one is a number."""
    try:
        cells = [_number(row.get(column)) for _, row in records]
    except ValueError:
        return False
    return any(cell is not None for cell in cells)
