"""DARTS (Liu et al., 2019): continuous relaxation, bilevel first- or second-order search."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from oneshot.search.algorithms.base import ArchOptimizerConfig, Batch, OneShotSearch, WeightOptimizerConfig
from oneshot.search.architecture import weights_as_constants
from oneshot.search.algorithms.unrolled import VirtualStep, unrolled_arch_gradients
from oneshot.search.auxiliary_skip import update_auxiliary_skip
from supernets.auxiliary import add_auxiliary_skips


class DartsSearch(OneShotSearch):
    """Every edge computes all candidates mixed by ``softmax(alpha)``.

    First order takes the alpha gradient of the validation loss at the current weights; second
    order (``unrolled=True``) differentiates through one virtual SGD step of the weights.
    With ``auxiliary_skip`` (DARTS-) every choice also adds ``beta * skip(x)``, ``beta``
    decaying per epoch from 1 to 0 (:mod:`oneshot.search.auxiliary_skip`).
    """

    algorithm_name = "darts"

    def __init__(self, supernet: nn.Module, *, num_classes: int, unrolled: bool,
                 auxiliary_skip: bool, weight_optimizer: WeightOptimizerConfig,
                 arch_optimizer: ArchOptimizerConfig, alpha_init_std: float,
                 options: Mapping[str, Any] | None = None) -> None:
        super().__init__(supernet, num_classes=num_classes, weight_optimizer=weight_optimizer,
                         arch_optimizer=arch_optimizer, alpha_init_std=alpha_init_std,
                         options={"unrolled": unrolled, "auxiliary_skip": auxiliary_skip,
                                  **dict(options or {})})
        self.unrolled = unrolled
        self.auxiliary_skip = auxiliary_skip
        if auxiliary_skip:
            add_auxiliary_skips(supernet)

    def training_architecture(self) -> Mapping[str, torch.Tensor]:
        return self.arch_weights()

    def eval_architecture(self) -> Mapping[str, torch.Tensor]:
        return self.arch_weights()

    def architecture_step(self, batch_w: Batch, batch_a: Batch) -> torch.Tensor:
        alphas = self.arch.parameters_list()
        if self.unrolled:
            # the loss reported is the one differentiated, at the virtual step's weights: no
            # further forward pass at the current weights just to log it
            grads, arch_loss = unrolled_arch_gradients(
                self.supernet, self.arch.softmax, alphas, batch_w, batch_a, self.criterion,
                self._virtual_step(), self._momentum_buffers())
        else:
            x_a, y_a = batch_a
            with weights_as_constants(self.supernet):
                loss = self.criterion(self.supernet(x_a, self.arch.softmax()), y_a)
                grads = torch.autograd.grad(loss, alphas)
            arch_loss = loss.detach()
        self.apply_arch_gradients(grads)
        return arch_loss

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.auxiliary_skip:
            update_auxiliary_skip(self)

    def _virtual_step(self) -> VirtualStep:
        group = self.optimizers()[0].optimizer.param_groups[0]
        return VirtualStep(lr=group["lr"], momentum=group["momentum"], weight_decay=group["weight_decay"])

    def _momentum_buffers(self) -> dict[str, torch.Tensor]:
        state = self.optimizers()[0].optimizer.state
        return {name: state[p]["momentum_buffer"] for name, p in self.supernet.named_parameters()
                if state.get(p, {}).get("momentum_buffer") is not None}
