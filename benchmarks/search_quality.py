"""Search quality: algorithms x seeds under one preset, each search in its own process.

Every search is ``python -m oneshot.train task=T experiment=P algorithm=A seed=S hydra.run.dir=...``
(Hydra's own dir: searches started in the same second do not share a timestamped default),
one at a time by default (``--jobs N`` runs N at once), with ``OMP_NUM_THREADS`` and ``threads``
set to ``--threads``. Collected per search: the found cell (``genotype.json``), the supernet's
validation accuracy, the wall time and the peak resident memory of the search process (its
``ru_maxrss``); with ``--nats FILE`` (or ``--csv TABLE``) the benchmark's test accuracies of the
found cell. ``--table`` prints markdown tables (mean +- std over seeds per algorithm, then every
search); ``--out FILE`` writes everything as JSON.

    python benchmarks/search_quality.py --algorithms darts gdas --seeds 0 1 2 \\
        --experiment nb201_paper --nats NATS-tss-v1_0-3ffb9-simple --table --out quality.json
    python benchmarks/search_quality.py --task synthetic --experiment quick --seeds 0 1 \\
        --table -- space=nb201 trainer.max_epochs=1      # overrides after -- go to every search
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from oneshot.errors import ConfigError
from oneshot.tables.benchmark import ResultTable, load_benchmark_table
from supernets.genotype_file import load_genotype_file
from supernets.spaces import get_space


@dataclass
class SearchResult:
    """One search: what it found and what it cost."""

    algorithm: str
    seed: int
    run_dir: str
    exit_code: int
    wall_s: float
    peak_rss_mib: float
    genotype: str | None = None
    val_acc: float | None = None
    benchmark: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None


def search_command(args: argparse.Namespace, algorithm: str, seed: int, run_dir: Path) -> list[str]:
    """The ``oneshot.train`` command line of one search."""
    return [sys.executable, "-m", "oneshot.train", f"task={args.task}",
            f"experiment={args.experiment}", f"algorithm={algorithm}", f"seed={seed}",
            f"hydra.run.dir={run_dir}", f"threads={args.threads}", "trainer.enable_progress_bar=false",
            *args.overrides]


def run_search(args: argparse.Namespace, algorithm: str, seed: int) -> SearchResult:
    """Run one search as a child process and read what it wrote."""
    run_dir = Path(args.root) / algorithm / f"seed_{seed}"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = run_dir.parent / f"seed_{seed}.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    with log.open("w") as out:
        child = subprocess.Popen(search_command(args, algorithm, seed, run_dir), stdout=out,
                                 stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(child.pid, 0)  # the rusage of this child alone
    child.returncode = os.waitstatus_to_exitcode(status)
    result = SearchResult(algorithm, seed, str(run_dir), child.returncode,
                          time.perf_counter() - start, usage.ru_maxrss / 1024)  # KiB on Linux
    if child.returncode != 0:
        lines = log.read_text(errors="replace").strip().splitlines()
        result.error = lines[-1] if lines else f"exit code {child.returncode}"
        return result
    document = load_genotype_file(run_dir / "genotype.json")
    result.genotype = str(get_space(document.space).genotype_from_dict(document.genotype))
    result.val_acc = document.meta.get("val_acc")
    return result


def benchmark_source(args: argparse.Namespace) -> ResultTable | None:
    """The NATS-Bench file (``--nats``) or CSV table (``--csv``) to look the found cells up in."""
    if args.nats:
        from oneshot.tables.nats import load_nats_table
        return load_nats_table(args.nats)
    return load_benchmark_table(args.csv) if args.csv else None


def _mean_std(values: Sequence[float | None], scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± std`` over the values that exist (sample std; the value alone for one; ``n/a``)."""
    present = [v * scale for v in values if v is not None]
    if not present:
        return "n/a"
    if len(present) == 1:
        return f"{present[0]:.{digits}f}"
    return f"{statistics.mean(present):.{digits}f} ± {statistics.stdev(present):.{digits}f}"


def markdown_tables(results: Sequence[SearchResult], columns: Sequence[str]) -> str:
    """The summary per algorithm (mean ± std over seeds) and the table of every search."""
    head = ["algorithm", "searches", "supernet val acc (%)", *(f"{c} (%)" for c in columns),
            "search time (min)", "peak RSS (MiB)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for algorithm in dict.fromkeys(r.algorithm for r in results):
        done = [r for r in results if r.algorithm == algorithm and r.exit_code == 0]
        total = sum(r.algorithm == algorithm for r in results)
        cells = [algorithm, f"{len(done)}/{total}", _mean_std([r.val_acc for r in done], 100),
                 *(_mean_std([r.benchmark.get(c) for r in done]) for c in columns),
                 _mean_std([r.wall_s for r in done], 1 / 60),
                 _mean_std([r.peak_rss_mib for r in done], digits=0)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| algorithm | seed | cell | supernet val acc (%) | "
              + "".join(f"{c} (%) | " for c in columns) + "search time (min) | peak RSS (MiB) |",
              "|" + "---|" * (6 + len(columns))]
    for r in results:
        cell = f"`{r.genotype}`" if r.genotype else f"failed: {r.error}"
        values = [_mean_std([r.val_acc], 100), *(_mean_std([r.benchmark.get(c)]) for c in columns),
                  _mean_std([r.wall_s], 1 / 60), _mean_std([r.peak_rss_mib], digits=0)]
        lines.append(f"| {r.algorithm} | {r.seed} | {cell.replace('|', chr(92) + '|')} | "
                     + " | ".join(values) + " |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="+", default=["darts", "gdas"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--experiment", default="nb201_paper", help="the preset (experiment=...)")
    parser.add_argument("--task", default="cifar10")
    parser.add_argument("--root", default="runs/search_quality",
                        help="run dirs go to ROOT/<algorithm>/seed_<seed>, logs beside them")
    parser.add_argument("--threads", type=int, default=1, help="OMP and torch threads per search")
    parser.add_argument("--jobs", type=int, default=1, help="searches at once")
    parser.add_argument("--nats", help="NATS-Bench topology file or fast-mode dir (benchmark.nats)")
    parser.add_argument("--csv", help="a CSV benchmark table (benchmark.table), when no --nats")
    parser.add_argument("--table", action="store_true", help="print markdown tables")
    parser.add_argument("--out", help="write the results as JSON to this file")
    parser.add_argument("overrides", nargs="*", help="oneshot.train overrides for every search")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.jobs < 1:
        parser.error("--threads and --jobs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        source = benchmark_source(args)  # read first: a bad file stops before any search
        runs = [(a, s) for a in args.algorithms for s in args.seeds]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(lambda run: run_search(args, *run), runs))
        for result in results:
            if source is not None and result.genotype is not None:
                result.benchmark = source.lookup(result.genotype) or {}
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    columns = list(source.columns) if source is not None else []
    for r in results:
        status = f"{r.genotype}" if r.exit_code == 0 else f"FAILED ({r.error})"
        print(f"{r.algorithm} seed {r.seed}: {r.wall_s:.1f} s, {r.peak_rss_mib:.0f} MiB, {status}",
              file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps({
            "experiment": args.experiment, "task": args.task, "overrides": args.overrides,
            "threads": args.threads, "jobs": args.jobs, "benchmark": args.nats or args.csv,
            "columns": columns, "searches": [asdict(r) for r in results]}, indent=2) + "\n")
    if args.table:
        print(markdown_tables(results, columns))
    return 0 if all(r.exit_code == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
