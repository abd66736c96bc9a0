"""PC-DARTS (Xu et al., 2020): partial channel connections and edge normalization.

The space is built with ``partial_channels`` K (:func:`pcdarts_space_options`, which
``oneshot.train`` applies), so that every edge mixes ``1 / K`` of its channels
(:mod:`supernets.partial`); the architecture adds, per node, betas over its incoming edges
(:class:`~oneshot.search.edge_normalization.EdgeNormalizedParameters`). The alphas and betas
are trained first order, after ``warmup_epochs`` epochs that train only the weights.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from torch import nn

from oneshot.errors import ConfigError
from oneshot.search.algorithms.base import ArchOptimizerConfig, WeightOptimizerConfig
from oneshot.search.algorithms.darts import DartsSearch
from oneshot.search.edge_normalization import EdgeNormalizedParameters, check_node_edges
from supernets.choices import OpChoice
from supernets.partial import PartialChannels


def pcdarts_space_options(space: type, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options pcdarts builds the space with: ``partial_channels`` when it is above 1.

    A space whose constructor does not take ``partial_channels`` is a :class:`ConfigError`.
    """
    k = options["partial_channels"]
    if k == 1:
        return {}
    if "partial_channels" not in inspect.signature(space.__init__).parameters:
        raise ConfigError(f"algorithm.partial_channels={k} needs a space built with partial "
                          f"channels, and {space.__name__} takes no partial_channels option: "
                          "use space=darts or space=nb201, or set algorithm.partial_channels=1")
    return {"partial_channels": k}


def _built_partial_channels(supernet: nn.Module) -> set[int]:
    """The K of every partial-channel edge of ``supernet`` (an empty set when it has none)."""
    return {module.groups for module in supernet.modules() if isinstance(module, PartialChannels)}


class PcDartsSearch(DartsSearch):
    """DARTS (first order) on a partial-channel supernet, each edge weighted within its node.

    ``partial_channels`` must be the K the supernet was built with (1: every channel mixed);
    ``edge_normalization`` adds the betas (it needs the space's
    :meth:`~supernets.supernet.Supernet.node_edges`); the architecture is not updated in the
    first ``warmup_epochs`` epochs. ``auxiliary_skip`` is DARTS-'s decaying skip on every
    mixed edge (:mod:`oneshot.search.auxiliary_skip`), here on its ``1 / K`` channels.
    """

    algorithm_name = "pcdarts"

    def __init__(self, supernet: nn.Module, *, num_classes: int, partial_channels: int,
                 edge_normalization: bool, warmup_epochs: int, auxiliary_skip: bool,
                 weight_optimizer: WeightOptimizerConfig, arch_optimizer: ArchOptimizerConfig,
                 alpha_init_std: float) -> None:
        built = _built_partial_channels(supernet)
        if built != ({partial_channels} if partial_channels > 1 else set()):
            raise ConfigError(f"algorithm.partial_channels={partial_channels} but the supernet's "
                              f"edges mix 1/K of their channels for K in {sorted(built) or [1]}; "
                              f"build the space with partial_channels={partial_channels} "
                              "(oneshot.train does)")
        super().__init__(supernet, num_classes=num_classes, unrolled=False,
                         auxiliary_skip=auxiliary_skip, weight_optimizer=weight_optimizer,
                         arch_optimizer=arch_optimizer, alpha_init_std=alpha_init_std,
                         options={"partial_channels": partial_channels,
                                  "edge_normalization": edge_normalization,
                                  "warmup_epochs": warmup_epochs})
        self.hparams.pop("unrolled")  # always first order: not an option of pcdarts
        if edge_normalization:
            op_labels = [label for label, modules in supernet.choices().items()
                         if isinstance(modules[0], OpChoice)]
            node_edges = check_node_edges(supernet.node_edges(), op_labels)
            self.arch = EdgeNormalizedParameters(supernet.choice_points(), node_edges,
                                                 init_std=alpha_init_std)
        self.warmup_epochs = warmup_epochs
