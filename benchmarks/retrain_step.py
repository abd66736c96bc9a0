"""Seconds per retraining step of a derived network, and peak memory.

Protocol (../shared/BENCHMARKS.md): one process, torch's default threads, 3 warm-up steps then
20 timed steps through the real Lightning training loop (forward with auxiliary head and
drop-path masks, which cost the same at any probability; backward, gradient clipping, SGD step),
on synthetic 32x32 images with cutout; prints the median, min and max seconds per
step and the peak resident memory (CPU) or peak allocated memory (GPU).

    python benchmarks/retrain_step.py                      # DARTS_V2, 36 ch, 20 cells, batch 96
    python benchmarks/retrain_step.py --batch 32 --channels 16 --layers 8 --steps 5
    python benchmarks/retrain_step.py --precision bf16-mixed --channels-last
"""

from __future__ import annotations

import argparse
import sys

import pytorch_lightning as pl
import torch

from common import StepTimer, step_trainer, add_protocol_args, device_and_peak, timing
from oneshot.training.datamodules import RetrainDataModule
from oneshot.storage.genotypes import load_genotype
from oneshot.retraining.module import RetrainModule
from supernets.spaces import create_network
from tasks import load_task


def run(args: argparse.Namespace) -> None:
    steps = args.warmup + args.steps
    pl.seed_everything(0, verbose=False)
    loaded = load_genotype(args.genotype)
    dataset = load_task("synthetic", num_train=args.batch * steps, num_test=args.batch,
                        image_size=32, num_classes=10)
    network = create_network(loaded.space, loaded.genotype, num_classes=10,
                             channels=args.channels, layers=args.layers)
    module = RetrainModule(network, num_classes=10, channels_last=args.channels_last,
                           compile=args.compile)
    timer = StepTimer()
    trainer = step_trainer(args.device, args.precision, steps, timer,
                           gradient_clip_val=5.0)
    trainer.fit(module, datamodule=RetrainDataModule(dataset, batch_size=args.batch, cutout=16))
    timed = timer.seconds[args.warmup:]
    name, peak_gib, measured = device_and_peak(trainer.strategy.root_device)
    peak = f"{peak_gib:.2f} GiB {measured}"
    print(f"retrain {args.genotype} | space {loaded.space} | batch {args.batch} | "
          f"channels {args.channels} | cells {args.layers} | "
          f"precision {args.precision} | channels_last {args.channels_last} | "
          f"compile {args.compile} | torch {torch.__version__} | device {name} | "
          f"threads {torch.get_num_threads()}")
    print(f"  {timing(timed)} | peak memory {peak}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genotype", default="DARTS_V2",
                        help="published name, genotype.json, DARTS text file or search run dir")
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--channels", type=int, default=36)
    parser.add_argument("--layers", type=int, default=20)
    add_protocol_args(parser)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse_args(sys.argv[1:]))
