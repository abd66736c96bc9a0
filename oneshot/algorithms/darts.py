"""DARTS (Liu et al., 2019): continuous relaxation, bilevel first- or second-order search."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from oneshot.algorithms.unrolled import VirtualStep, unrolled_arch_gradients
from oneshot.architecture import ArchitectureParameters
from oneshot.guards import NonFiniteLossGuard

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class WeightOptimizerConfig:
    """SGD with momentum on the supernet weights, cosine-annealed per epoch to ``lr_min``."""

    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 3e-4
    lr_min: float = 0.001
    grad_clip: float = 5.0


@dataclass(frozen=True)
class ArchOptimizerConfig:
    """Adam on the architecture parameters (alphas)."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 1e-3


class DartsSearch(pl.LightningModule):
    """Alternates an architecture step on the alpha half and a weight step on the weight half.

    ``supernet(x, arch)`` must accept the architecture as ``label -> weights over candidates`` and
    provide ``choice_points()`` and ``derive(arch_weights)``.
    """

    def __init__(self, supernet: nn.Module, *, num_classes: int, unrolled: bool = False,
                 weight_optimizer: WeightOptimizerConfig = WeightOptimizerConfig(),
                 arch_optimizer: ArchOptimizerConfig = ArchOptimizerConfig(),
                 alpha_init_std: float = 1e-3) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.save_hyperparameters({
            "algorithm": "darts", "num_classes": num_classes, "unrolled": unrolled,
            "weight_optimizer": asdict(weight_optimizer), "arch_optimizer": asdict(arch_optimizer),
        })
        self.supernet = supernet
        self.arch = ArchitectureParameters(supernet.choice_points(), init_std=alpha_init_std)
        self.unrolled = unrolled
        self.weight_optimizer_config = weight_optimizer
        self.arch_optimizer_config = arch_optimizer
        self.criterion = nn.CrossEntropyLoss()
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.loss_guard = NonFiniteLossGuard()

    def arch_weights(self) -> dict[str, torch.Tensor]:
        """The current architecture as detached softmax rows."""
        with torch.no_grad():
            return {label: row.detach() for label, row in self.arch.softmax().items()}

    def genotype(self) -> Any:
        """Discretize the current alphas with the search space's derive rule."""
        return self.supernet.derive(self.arch_weights())

    def configure_optimizers(self) -> Any:
        w_cfg, a_cfg = self.weight_optimizer_config, self.arch_optimizer_config
        weight_opt = torch.optim.SGD(self.supernet.parameters(), lr=w_cfg.lr, momentum=w_cfg.momentum,
                                     weight_decay=w_cfg.weight_decay)
        arch_opt = torch.optim.Adam(self.arch.parameters(), lr=a_cfg.lr, betas=tuple(a_cfg.betas),
                                    weight_decay=a_cfg.weight_decay)
        epochs = max(1, self.trainer.max_epochs or 1)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(weight_opt, T_max=epochs, eta_min=w_cfg.lr_min)
        return [weight_opt, arch_opt], [schedule]

    def training_step(self, batch: Mapping[str, Batch], batch_idx: int) -> torch.Tensor:
        weight_opt, arch_opt = self.optimizers()
        arch_loss = self._architecture_step(arch_opt, batch["train"], batch["val"])
        x, y = batch["train"]
        logits = self.supernet(x, self.arch_weights())
        loss = self.criterion(logits, y)
        weight_opt.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(weight_opt, gradient_clip_val=self.weight_optimizer_config.grad_clip,
                            gradient_clip_algorithm="norm")
        weight_opt.step()
        self.loss_guard.observe({"weight": loss, "architecture": arch_loss},
                                epoch=self.current_epoch, batch=batch_idx)
        if self.loss_guard.due(self.device, batch_idx):
            self.loss_guard.check()
        self.train_acc(logits.detach(), y)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True)
        self.log("train/arch_loss", arch_loss, on_step=True, on_epoch=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss.detach()

    def _architecture_step(self, arch_opt: Any, batch_w: Batch, batch_a: Batch) -> torch.Tensor:
        """One Adam step on the alphas; returns the (detached) architecture loss."""
        alphas = self.arch.parameters_list()
        x_a, y_a = batch_a
        if self.unrolled:
            grads = unrolled_arch_gradients(
                self.supernet, self.arch.softmax, alphas, batch_w, batch_a, self.criterion,
                self._virtual_step(), self._momentum_buffers())
            with torch.no_grad():
                arch_loss = self.criterion(self.supernet(x_a, self.arch_weights()), y_a)
        else:
            loss = self.criterion(self.supernet(x_a, self.arch.softmax()), y_a)
            grads = torch.autograd.grad(loss, alphas)
            arch_loss = loss.detach()
        arch_opt.zero_grad()
        for alpha, grad in zip(alphas, grads):
            alpha.grad = grad
        arch_opt.step()
        return arch_loss

    def _virtual_step(self) -> VirtualStep:
        weight_opt = self.optimizers()[0].optimizer
        group = weight_opt.param_groups[0]
        return VirtualStep(lr=group["lr"], momentum=group["momentum"], weight_decay=group["weight_decay"])

    def _momentum_buffers(self) -> dict[str, torch.Tensor]:
        state = self.optimizers()[0].optimizer.state
        return {name: state[p]["momentum_buffer"] for name, p in self.supernet.named_parameters()
                if state.get(p, {}).get("momentum_buffer") is not None}

    def on_train_epoch_end(self) -> None:
        self.loss_guard.check()
        self.lr_schedulers().step()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        logits = self.supernet(x, self.arch_weights())
        self.val_acc(logits, y)
        self.log("val/loss", self.criterion(logits, y), on_epoch=True, sync_dist=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)
