"""Tiny NATS-Bench topology files in the official formats, built with the ``nats_bench`` package's
own result classes (``ArchResults``, ``ResultsCount``) and its ``pickle_save``.

``write_nats_file`` writes the one-file layout (``*.pickle.pbz2``: ``meta_archs``, ``arch2infos``,
``evaluated_indexes``), ``write_nats_dir`` the fast-mode directory (``meta.pickle.pbz2`` and one
``<index:06d>.pickle.pbz2`` per architecture). ``meta_archs`` lists all 15625 cells, as the real
file does; results exist only for the architectures given.

Accuracies: ``finals[arch][column]`` is one final test accuracy per seed after 200 epochs (the
values a correct query averages). Every other number (earlier epochs, validation sets, the
12-epoch schedule) is far from those, so a query of the wrong epoch, set or schedule shows.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Mapping, Sequence

from nats_bench.api_utils import ArchResults, ResultsCount, pickle_save

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
SEEDS = (777, 888)
COLUMN_DATASET = {"cifar10_test": "cifar10", "cifar100_test": "cifar100",
                  "imagenet16_120_test": "ImageNet16-120"}
EVAL_SETS = {"cifar10-valid": ("x-valid", "ori-test"), "cifar10": ("ori-test",),
             "cifar100": ("x-valid", "x-test", "ori-test"),
             "ImageNet16-120": ("x-valid", "x-test", "ori-test")}
TEST_SET = {"cifar10": "ori-test", "cifar100": "x-test", "ImageNet16-120": "x-test"}
OTHER = 11.0  # every accuracy that a correct query does not read


def all_archs() -> list[str]:
    """Every NAS-Bench-201 cell string (5 operations on 6 edges)."""
    return ["|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)
            for ops in itertools.product(OPS, repeat=6)]


def _trial(arch: str, dataset: str, seed: int, epochs: int, final: float | None) -> ResultsCount:
    """One training run of ``arch``: ``final`` is its last-epoch test accuracy (200 epochs)."""
    result = ResultsCount(dataset, None, {e: OTHER for e in range(epochs)},
                          {e: 1.0 for e in range(epochs)}, 0.1, 10.0,
                          {"channel": 16, "num_cells": 5, "arch_str": arch, "class_num": 10},
                          seed, epochs, [0.01])
    accs, losses, times = {}, {}, {}
    for name in EVAL_SETS[dataset]:
        for e in range(epochs):
            last_test = e == epochs - 1 and name == TEST_SET.get(dataset) and final is not None
            accs[f"{name}@{e}"] = final if last_test else OTHER
            losses[f"{name}@{e}"], times[f"{name}@{e}"] = 1.0, 0.1
    result.update_eval(accs, losses, times)
    return result


def _record(index: int, arch: str, finals: Mapping[str, Sequence[float]]) -> dict:
    """``{"12": ..., "200": ...}``: the architecture's results per schedule, as state dicts."""
    record = {}
    for hp, epochs in (("12", 12), ("200", 200)):
        results = ArchResults(index, arch)
        for dataset in EVAL_SETS:
            column = next((c for c, d in COLUMN_DATASET.items() if d == dataset), None)
            for k, seed in enumerate(SEEDS):
                final = finals[column][k] if hp == "200" and column in finals else None
                results.update(dataset, seed, _trial(arch, dataset, seed, epochs, final))
        record[hp] = results.state_dict()
    return record


def write_nats_file(path: Path, finals: Mapping[str, Mapping[str, Sequence[float]]]) -> Path:
    """The one-file layout at ``path`` (which must end in ``.pickle.pbz2``)."""
    archs = all_archs()
    infos = {archs.index(a): _record(archs.index(a), a, f) for a, f in finals.items()}
    pickle_save({"meta_archs": archs, "arch2infos": infos, "evaluated_indexes": sorted(infos)},
                str(path).removesuffix(".pbz2"))
    return path


def write_nats_dir(folder: Path, finals: Mapping[str, Mapping[str, Sequence[float]]]) -> Path:
    """The fast-mode directory layout in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    archs = all_archs()
    pickle_save({"meta_archs": archs}, str(folder / "meta.pickle"))
    for arch, f in finals.items():
        index = archs.index(arch)
        pickle_save(_record(index, arch, f), str(folder / f"{index:06d}.pickle"))
    return folder
