"""Images per second of task=imagefolder's two data paths on this machine.

    python benchmarks/imagefolder_decoding.py SOURCE OUT [--per-class 500] [--size 64]

SOURCE is a tree of class folders (e.g. the extracted cifar10-jpg/train); OUT receives a copy of
``--per-class`` images of each class resized to ``--size`` x ``--size`` JPEGs, with only class
folders (the held-out split applies). Measured: the one-time decode into the in-memory cache
(``task.workers`` processes), an epoch of training batches read from memory, and an epoch read by
the streaming path (each batch decoded from its files by the loader's workers).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from torchvision.io import decode_image, encode_jpeg
from torchvision.transforms.v2 import functional as TF

from tasks import load_task
from tasks.loader import make_loader
from tasks.streaming import make_stream_loader


def build_folder(source: Path, out: Path, per_class: int, size: int) -> None:
    """Copy ``per_class`` images of each class of ``source`` into ``out``, resized to size^2."""
    for class_dir in sorted(path for path in source.iterdir() if path.is_dir()):
        target = out / class_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(class_dir.iterdir())[:per_class]:
            image = TF.resize(decode_image(str(path)), [size, size], antialias=True)
            (target / path.name).write_bytes(encode_jpeg(image, quality=90).numpy().tobytes())


def epoch_rate(loader, count: int) -> float:
    """Images per second of one pass over ``loader``."""
    start = time.perf_counter()
    seen = sum(len(labels) for _, labels in loader)
    assert seen == count, (seen, count)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    if not args.out.is_dir():
        start = time.perf_counter()
        build_folder(args.source, args.out, args.per_class, args.size)
        print(f"built {args.out} in {time.perf_counter() - start:.1f} s")
    cache = args.out.parent / f"{args.out.name}-cache"
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load {os.getloadavg()}")
    for workers in args.workers:
        for stale in cache.glob("imagefolder-*"):
            stale.unlink()
        cache.mkdir(exist_ok=True)
        start = time.perf_counter()
        memory = load_task("imagefolder", root=str(args.out), image_size=args.size,
                           workers=workers, cache_dir=str(cache))
        decode_s = time.perf_counter() - start
        total = len(memory.train_labels) + len(memory.test_labels)
        n = (len(memory.train_labels) // args.batch_size) * args.batch_size
        options = dict(batch_size=args.batch_size, shuffle=True, seed=0, drop_last=True)
        in_memory = epoch_rate(make_loader(memory.train_images, memory.train_labels, **options),
                               n)
        streamed = load_task("imagefolder", root=str(args.out), image_size=args.size,
                             workers=workers, cache_dir=str(cache), memory_budget_gb=0)
        stream = epoch_rate(make_stream_loader(streamed.train_images, streamed.train_labels,
                                               **options), n)
        print(f"workers={workers}: cache decode {total / decode_s:,.0f} img/s ({total} images, "
              f"{decode_s:.2f} s, incl. statistics); in-memory epoch {in_memory:,.0f} img/s; "
              f"streaming epoch {stream:,.0f} img/s")


if __name__ == "__main__":
    main()
