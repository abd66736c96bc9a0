"""DDP that keeps one architecture on every process.

DDP averages the gradients of the parameters its reducer owns. The architecture parameters are
updated by their own step (``OneShotSearch.apply_arch_gradients`` averages their gradients
explicitly), so they are kept out of DDP's buckets: listed as ignored before the model is wrapped.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from pytorch_lightning.strategies import DDPStrategy
from torch import nn
from torch.nn.parallel import DistributedDataParallel

DDP_START_METHODS = {"ddp": "popen", "ddp_spawn": "spawn", "ddp_fork": "fork", "ddp_notebook": "fork"}


class SearchDDPStrategy(DDPStrategy):
    """Lightning's DDP with the module's ``parameters_outside_ddp()`` left out of the reducer.

    A module whose steps run only part of the supernet sets ``ddp_find_unused_parameters = True``.
    """

    def _setup_model(self, model: nn.Module) -> DistributedDataParallel:
        module = self.lightning_module
        outside = {id(p) for p in getattr(module, "parameters_outside_ddp", lambda: [])()}
        model._ddp_params_and_buffers_to_ignore = [
            name for name, p in model.named_parameters() if id(p) in outside]
        self._ddp_kwargs.setdefault(
            "find_unused_parameters", bool(getattr(module, "ddp_find_unused_parameters", False)))
        return super()._setup_model(model)


def make_strategy(name: Any) -> Any:
    """Replace a DDP strategy name by :class:`SearchDDPStrategy`; other names pass through."""
    if isinstance(name, str) and name in DDP_START_METHODS:
        return SearchDDPStrategy(start_method=DDP_START_METHODS[name])
    return name


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity, as set by ``taskset`` or a scheduler)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_processes(trainer: Mapping[str, Any]) -> int:
    """How many processes of a search run on this machine's CPU: ``trainer.devices`` for DDP on
    the CPU, else 1."""
    devices = trainer.get("devices")
    on_cpu = trainer.get("accelerator") == "cpu" or (
        trainer.get("accelerator") == "auto" and not torch.cuda.is_available())
    if not (on_cpu and trainer.get("strategy") in DDP_START_METHODS):
        return 1
    return devices if isinstance(devices, int) and devices > 0 else 1


def thread_share(cores: int, sharers: int, limit: int | None = None) -> int:
    """Threads for one of ``sharers`` processes on ``cores`` cores: an equal share, at least one,
    at most ``limit`` (an ``OMP_NUM_THREADS`` already set)."""
    share = max(1, cores // max(1, sharers))
    return min(share, limit) if limit else share


def share_threads(threads: int | None, trainer: Mapping[str, Any], jobs: int) -> int | None:
    """Set torch's CPU threads (and ``OMP_NUM_THREADS``, for the rank processes this one starts):
    ``threads`` if given, else this process's share of the cores when ``jobs`` parallel jobs and
    CPU DDP processes share them. Returns the number set, ``None`` if torch's default stays."""
    if threads is None:
        sharers = jobs * cpu_processes(trainer)
        if sharers <= 1:
            return None
        limit = os.environ.get("OMP_NUM_THREADS", "")
        threads = thread_share(available_cores(), sharers, int(limit) if limit.isdigit() else None)
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads
