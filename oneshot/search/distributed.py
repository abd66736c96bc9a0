"""DDP that keeps one architecture on every process.

DDP averages the gradients of the parameters its reducer owns. The architecture parameters are
updated by their own step (``OneShotSearch.apply_arch_gradients`` averages their gradients
explicitly), so they are kept out of DDP's buckets: listed as ignored before the model is wrapped.
"""

from __future__ import annotations

from typing import Any

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
