"""The GPU path, measured in one short run: search and retrain steps per precision, layout and compile.

Under 8 minutes on one CUDA GPU. Each configuration runs 3 warm-up steps then ``--steps`` timed
steps through the real Lightning loop (as benchmarks/search_step.py), in this one process, with
the peak-memory counter reset in between. It prints a markdown table: algorithm, order,
precision, channels_last, torch.compile (with its compile time: the warm-up steps' extra
seconds), s/step (median), peak allocated memory, and the host synchronisations counted inside
the timed steps by ``torch.cuda.set_sync_debug_mode("warn")`` (zero means no step waits for the
GPU). It ends with the estimated wall time of a full 50-epoch CIFAR-10 search (391 steps and one
validation pass over the 25,000 alpha-half images per epoch) and the DARTS_V2 retrain step at
batch 96. Configurations past ``--budget`` seconds are listed as skipped.

    python benchmarks/gpu_check.py                       # on a CUDA machine
    python benchmarks/gpu_check.py --device cpu --small --steps 2    # the CPU smoke test
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import pytorch_lightning as pl
import torch

from common import StepTimer, device_and_peak, search_data, step_trainer
from oneshot.retraining.module import RetrainModule
from oneshot.search.algorithms import algorithm_space_options, create_algorithm, list_algorithms
from oneshot.storage.genotypes import load_genotype
from oneshot.training.datamodules import RetrainDataModule, SearchDataModule
from supernets.spaces import create_network, create_supernet, get_space
from tasks import load_task

SYNC_WARNING = "called a synchronizing CUDA operation"
SEARCH_EPOCHS, STEPS_PER_EPOCH, VAL_IMAGES = 50, 391, 25_000  # DARTS: 25,000 images per half, batch 64


@dataclass(frozen=True)
class Config:
    """One measured configuration."""

    kind: str            # "search" or "retrain"
    algorithm: str       # a search algorithm, or the retrained genotype
    order: str           # "first" / "second" for DARTS, "-" otherwise
    precision: str
    channels_last: bool
    compile: bool

    def label(self) -> str:
        return (f"{self.kind} {self.algorithm} {self.order} {self.precision} "
                f"cl={int(self.channels_last)} compile={int(self.compile)}")


@dataclass(frozen=True)
class Sizes:
    """Batch, channels and cells of the search and of the retrained network."""

    batch: int = 64
    channels: int = 16
    layers: int = 8
    retrain_batch: int = 96
    retrain_channels: int = 36
    retrain_layers: int = 20
    image_size: int = 32


SMALL = Sizes(batch=8, channels=4, layers=3, retrain_batch=8, retrain_channels=4,
              retrain_layers=3, image_size=32)


def configurations(precisions: tuple[str, ...]) -> list[Config]:
    """The DARTS grid (order x precision x layout), compiled DARTS, PC-DARTS and GDAS, retrain."""
    grid = [Config("search", "darts", order, precision, layout, False)
            for order in ("first", "second") for precision in precisions for layout in (True, False)]
    best = precisions[-1]
    grid += [Config("search", "darts", "first", best, True, True)]
    grid += [Config("search", name, "-", best, True, False)
             for name in ("pcdarts", "gdas") if name in list_algorithms()]
    grid += [Config("retrain", "DARTS_V2", "-", precision, True, False) for precision in precisions]
    grid += [Config("retrain", "DARTS_V2", "-", best, True, True)]
    return grid


class SyncCountingTimer(StepTimer):
    """Step times, and the host synchronisations inside each timed step (CUDA only).

    The debug mode is on only between the timer's own synchronisations, so they are not counted.
    """

    def __init__(self, warmup: int) -> None:
        super().__init__()
        self.warmup = warmup
        self.syncs = 0
        self._caught: list[warnings.WarningMessage] = []
        self._watch: Any = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                             *args: object) -> None:
        super().on_train_batch_start(trainer, pl_module, *args)
        if pl_module.device.type == "cuda" and len(self.seconds) >= self.warmup:
            self._watch = warnings.catch_warnings(record=True)
            self._caught = self._watch.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           *args: object) -> None:
        if self._watch is not None:
            torch.cuda.set_sync_debug_mode("default")
            self.syncs += sum(SYNC_WARNING in str(w.message) for w in self._caught)
            self._watch.__exit__(None, None, None)
            self._watch = None
        super().on_train_batch_end(trainer, pl_module, *args)


def search_module(config: Config, sizes: Sizes) -> pl.LightningModule:
    """The search LightningModule of ``config`` (GDAS on the DARTS space too, for comparison)."""
    cfg = {"unrolled": config.order == "second"} if config.algorithm == "darts" else {}
    extra = algorithm_space_options(config.algorithm, get_space("darts").supernet, cfg)
    supernet = create_supernet("darts", num_classes=10, channels=sizes.channels,
                               layers=sizes.layers, **extra)
    if config.channels_last:
        supernet = supernet.to(memory_format=torch.channels_last)
    module = create_algorithm(config.algorithm, supernet, num_classes=10, cfg=cfg)
    if config.compile:
        module.supernet.compile()
    return module


def measure(args: argparse.Namespace, config: Config, sizes: Sizes) -> dict[str, Any]:
    """Run ``config``'s warm-up and timed steps; its times, peak memory and sync count."""
    steps = args.warmup + args.steps
    pl.seed_everything(0, verbose=False)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    torch._dynamo.reset()
    timer = SyncCountingTimer(args.warmup)
    if config.kind == "search":
        data = search_data(sizes.batch, steps, channels_last=config.channels_last, image_size=sizes.image_size)
        module = search_module(config, sizes)
        trainer = step_trainer(args.device, config.precision, steps, timer)
    else:
        dataset = load_task("synthetic", num_train=sizes.retrain_batch * steps,
                            num_test=sizes.retrain_batch, image_size=sizes.image_size, num_classes=10)
        loaded = load_genotype(config.algorithm)
        network = create_network(loaded.space, loaded.genotype, num_classes=10,
                                 channels=sizes.retrain_channels, layers=sizes.retrain_layers)
        module = RetrainModule(network, num_classes=10, channels_last=config.channels_last,
                               compile=config.compile)
        data = RetrainDataModule(dataset, batch_size=sizes.retrain_batch, cutout=16)
        trainer = step_trainer(args.device, config.precision, steps, timer,
                               gradient_clip_val=5.0)
    trainer.fit(module, datamodule=data)
    timed = timer.seconds[args.warmup:]
    median = statistics.median(timed)
    _, peak, measured = device_and_peak(trainer.strategy.root_device)
    result = {"median": median, "warmup_extra": sum(timer.seconds[:args.warmup]) - args.warmup * median,
              "peak": peak, "measured": measured, "syncs": timer.syncs / len(timed)}
    if config.kind == "search" and config.algorithm == "darts":
        result["validation"] = validation_seconds(module, data, trainer.strategy.root_device, config)
    return result


def validation_seconds(module: pl.LightningModule, data: SearchDataModule, device: torch.device,
                       config: Config) -> float:
    """Seconds per validation image of the search's supernet (one eval batch, timed twice)."""
    images, _ = next(iter(data.val_dataloader()))
    x = data.evaluate(images.to(device)).contiguous(memory_format=data.memory_format)
    dtype = torch.bfloat16 if config.precision.startswith("bf16") else None
    module.eval()
    seconds = []
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        for _ in range(2):
            _sync(device)
            start = time.perf_counter()
            module.supernet(x, module.eval_architecture())
            _sync(device)
            seconds.append(time.perf_counter() - start)
    return min(seconds) / len(x)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def search_hours(s_per_step: float, s_per_val_image: float) -> float:
    """Estimated hours of a full DARTS CIFAR-10 search at ``s_per_step``."""
    epoch = STEPS_PER_EPOCH * s_per_step + VAL_IMAGES * s_per_val_image
    return SEARCH_EPOCHS * epoch / 3600


def run_all(args: argparse.Namespace,
            report: Callable[[str], None] = lambda line: print(line, flush=True)) -> list[dict[str, Any]]:
    """Measure every configuration within the time budget and print the table."""
    sizes = SMALL if args.small else Sizes()
    precisions = tuple(args.precisions.split(","))
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    name = torch.cuda.get_device_name() if args.device in ("gpu", "cuda") else "cpu"
    report(f"device {name} | torch {torch.__version__} | threads {torch.get_num_threads()} | "
           f"search: batch {sizes.batch}, {sizes.channels} ch, {sizes.layers} cells | "
           f"retrain: batch {sizes.retrain_batch}, {sizes.retrain_channels} ch, "
           f"{sizes.retrain_layers} cells | {args.warmup} warm-up + {args.steps} timed steps")
    report("| run | algorithm | order | precision | channels_last | compile | s/step | "
           "compile/warm-up extra s | peak memory | host syncs/step |")
    report("|---|---|---|---|---|---|---|---|---|---|")
    chosen = [config for config in configurations(precisions)
              if not args.only or any(part in config.label() for part in args.only)]
    for config in chosen:
        if rows and time.perf_counter() - start > args.budget:
            report(f"| {config.kind} | {config.algorithm} | {config.order} | {config.precision} | "
                   f"{config.channels_last} | {config.compile} | skipped (time budget) | | | |")
            continue
        try:
            result = measure(args, config, sizes)
        except Exception as err:  # one failed configuration (e.g. no inductor backend) is reported
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            report(f"| {config.kind} | {config.algorithm} | {config.order} | {config.precision} | "
                   f"{config.channels_last} | {config.compile} | failed: {message[:120]} | | | |")
            continue
        rows.append({"config": config, **result})
        report(f"| {config.kind} | {config.algorithm} | {config.order} | {config.precision} | "
               f"{config.channels_last} | {config.compile} | {result['median']:.4f} | "
               f"{result['warmup_extra']:.1f} | {result['peak']:.2f} GiB {result['measured']} | "
               f"{result['syncs']:.2f} |")
    firsts = [row for row in rows if row["config"].kind == "search"
              and row["config"].algorithm == "darts" and row["config"].order == "first"]
    if firsts:
        fastest = min(firsts, key=lambda row: row["median"])
        report(f"estimated full search (DARTS first order, {SEARCH_EPOCHS} epochs x "
               f"{STEPS_PER_EPOCH} steps + validation), fastest configuration "
               f"({fastest['config'].label()}): "
               f"{search_hours(fastest['median'], fastest['validation']):.2f} h")
    report(f"total {time.perf_counter() - start:.0f} s")
    return rows


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="gpu", help="Lightning accelerator: gpu or cpu")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--precisions", default="32-true,bf16-mixed",
                        help="comma-separated Lightning precisions; the last is used for compile "
                             "and the other algorithms")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds after which the remaining configurations are skipped")
    parser.add_argument("--only", action="append", default=[],
                        help="run only configurations whose label contains this text, e.g. "
                             "'search darts first' or 'compile=0' (repeatable)")
    parser.add_argument("--small", action="store_true",
                        help="tiny sizes (batch 8, 4 channels, 3 cells) for a smoke test")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run_all(parse_args(sys.argv[1:]))
