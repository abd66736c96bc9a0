"""Time an exported model with the latency table's protocol (``supernets.cost.latency_ms``)."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def median_ms(run: Callable[[], Any], *, warmup: int, repeats: int,
              sync: Callable[[], None] = lambda: None) -> float:
    """Median milliseconds of ``run()`` over ``repeats`` timed calls after ``warmup`` untimed
    ones; ``sync`` (e.g. ``torch.cuda.synchronize``) is called before each clock reading."""
    times = []
    for call in range(warmup + repeats):
        sync()
        start = time.perf_counter()
        run()
        sync()
        if call >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
