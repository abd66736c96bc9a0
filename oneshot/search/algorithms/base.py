"""What one-shot searches share: the weight step, optimizers, metrics; alphas where there are."""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from oneshot.search.architecture import ArchitectureParameters
from oneshot.search.batchnorm import batch_statistics
from oneshot.search.guards import NonFiniteLossGuard
from oneshot.search.regularization import ArchRegularization
from supernets.mixed import ArchRow

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class WeightOptimizerConfig:
    """SGD with momentum on the supernet weights, cosine-annealed per epoch to ``lr_min``.

    The defaults, which differ between algorithms, are in each algorithm's YAML file
    (:func:`oneshot.search.algorithms.algorithm_defaults`).
    """

    lr: float
    momentum: float
    weight_decay: float
    lr_min: float
    grad_clip: float


@dataclass(frozen=True)
class ArchOptimizerConfig:
    """Adam on the architecture parameters (alphas); its defaults are in the YAML files too."""

    lr: float
    betas: tuple[float, float]
    weight_decay: float


class SupernetSearch(pl.LightningModule):
    """A supernet whose shared weights are trained with manual optimization.

    Provides the weight step (SGD with momentum, gradient clipping, cosine schedule per epoch),
    the non-finite loss guard, training/validation metrics and validation with
    :meth:`eval_architecture`. Subclasses add how architectures are chosen: the second optimizer
    (:meth:`architecture_optimizer`), ``training_step``, :meth:`eval_architecture` and
    :meth:`genotype`.
    """

    algorithm_name = "base"
    ddp_find_unused_parameters = False  # True where a step runs only part of the supernet

    def __init__(self, supernet: nn.Module, *, num_classes: int,
                 weight_optimizer: WeightOptimizerConfig,
                 hparams: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.save_hyperparameters({
            "algorithm": self.algorithm_name, "num_classes": num_classes,
            "weight_optimizer": asdict(weight_optimizer), **dict(hparams or {}),
        })
        self.supernet = supernet
        self.weight_optimizer_config = weight_optimizer
        self.criterion = nn.CrossEntropyLoss()
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.loss_guard = NonFiniteLossGuard()

    def genotype(self) -> Any:
        """The architecture the search currently recommends, as a genotype of its space."""
        raise NotImplementedError

    def eval_architecture(self) -> Mapping[str, ArchRow]:
        """The architecture the supernet is validated with."""
        raise NotImplementedError

    def architecture_optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer of whatever chooses architectures (second in ``optimizers()``), or
        ``None`` for a search that trains only the supernet weights (SPOS)."""
        raise NotImplementedError

    def weight_optimizer(self) -> Any:
        """The supernet weights' optimizer (first in ``optimizers()``)."""
        optimizers = self.optimizers()
        return optimizers[0] if isinstance(optimizers, list) else optimizers

    def parameters_outside_ddp(self) -> list[nn.Parameter]:
        """Parameters DDP must not average because their gradients are reduced explicitly."""
        return []

    def weight_step(self, batch: Batch, arch: Mapping[str, ArchRow], batch_idx: int,
                    other_losses: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """One SGD step of the supernet weights on ``batch`` with ``arch``; returns the loss.

        ``other_losses`` (detached) join the weight loss in the non-finite guard.
        """
        weight_opt = self.weight_optimizer()
        x, y = batch
        logits = self.supernet(x, arch)
        loss = self.criterion(logits, y)
        weight_opt.zero_grad()
        self.manual_backward(loss)
        self.clip_gradients(weight_opt, gradient_clip_val=self.weight_optimizer_config.grad_clip,
                            gradient_clip_algorithm="norm")
        weight_opt.step()
        self.loss_guard.observe({"weight": loss, **dict(other_losses or {})},
                                epoch=self.current_epoch, batch=batch_idx)
        if self.loss_guard.due(self.device, batch_idx):
            self.loss_guard.check()
        self.train_acc(logits.detach(), y)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss.detach()

    # -- Lightning hooks --------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        w_cfg = self.weight_optimizer_config
        weight_opt = torch.optim.SGD(self.supernet.parameters(), lr=w_cfg.lr, momentum=w_cfg.momentum,
                                     weight_decay=w_cfg.weight_decay)
        epochs = max(1, self.trainer.max_epochs or 1)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(weight_opt, T_max=epochs, eta_min=w_cfg.lr_min)
        arch_opt = self.architecture_optimizer()
        return [weight_opt] if arch_opt is None else [weight_opt, arch_opt], [schedule]

    def on_train_epoch_start(self) -> None:
        """Bring the cosine schedule to this epoch (also right after resuming from a checkpoint)."""
        schedule = self.lr_schedulers()
        with warnings.catch_warnings():  # after a resume it steps before this process's first optimizer step
            warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
            while schedule.last_epoch < self.current_epoch:
                schedule.step()

    def on_train_epoch_end(self) -> None:
        self.loss_guard.check()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Never save weights that came from a non-finite loss (checked before every save)."""
        self.loss_guard.check()

    def validation_logits(self, x: torch.Tensor, arch: Mapping[str, ArchRow]) -> torch.Tensor:
        """The supernet's logits of ``arch``, normalized with the batch's own BatchNorm
        statistics: the running ones average every path or mixture trained (README, Supernet
        validation); they are left untouched."""
        with batch_statistics(self.supernet):
            return self.supernet(x, arch)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        logits = self.validation_logits(x, self.eval_architecture())
        self.val_acc(logits, y)
        self.log("val/loss", self.criterion(logits, y), on_epoch=True, sync_dist=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)


class OneShotSearch(SupernetSearch):
    """A supernet with alpha logits per choice point.

    Each training step takes ``{"train": (x, y), "val": (x, y)}``: :meth:`architecture_step` on the
    ``val`` (alpha) half, then a weight step on the ``train`` half with :meth:`training_architecture`.
    Subclasses define those two and :meth:`eval_architecture`; the rest is shared.
    """

    softmax_alphas = True  # the architecture weights are softmax(alpha) (algorithm.regularization applies)
    warmup_epochs = 0  # first epochs that train only the weights (set by pcdarts and gdas)
    arch_regularization: ArchRegularization | None = None  # set by the registry from algorithm.regularization

    def __init__(self, supernet: nn.Module, *, num_classes: int,
                 weight_optimizer: WeightOptimizerConfig, arch_optimizer: ArchOptimizerConfig,
                 alpha_init_std: float, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(supernet, num_classes=num_classes, weight_optimizer=weight_optimizer,
                         hparams={"arch_optimizer": asdict(arch_optimizer),
                                  "alpha_init_std": alpha_init_std, **dict(options or {})})
        self.arch = ArchitectureParameters(supernet.choice_points(), init_std=alpha_init_std)
        self.arch_optimizer_config = arch_optimizer

    # -- the architecture -------------------------------------------------------------------
    def arch_weights(self) -> dict[str, torch.Tensor]:
        """The current architecture as detached softmax rows (for deriving and logging)."""
        with torch.no_grad():
            return {label: row.detach() for label, row in self.arch.softmax().items()}

    def genotype(self) -> Any:
        """Discretize the current alphas with the search space's derive rule."""
        return self.supernet.derive(self.arch_weights())

    def training_architecture(self) -> Mapping[str, ArchRow]:
        """The architecture the weight step trains (no gradient to the alphas)."""
        raise NotImplementedError

    def architecture_step(self, batch_w: Batch, batch_a: Batch) -> torch.Tensor:
        """Update the alphas; returns the detached architecture loss."""
        raise NotImplementedError

    def parameters_outside_ddp(self) -> list[nn.Parameter]:
        """Parameters DDP must not average: the alphas, whose gradients are reduced explicitly."""
        return list(self.arch.parameters())

    def apply_arch_gradients(self, grads: Sequence[torch.Tensor]) -> None:
        """Average ``grads`` over processes, then take one architecture optimizer step.

        The alphas are kept out of DDP's gradient buckets, so this all-reduce is what keeps one
        architecture on every rank.
        """
        alphas = self.arch.parameters_list()
        if self.arch_regularization is not None:  # on the choice points' alphas (train/arch_reg)
            term, extra = self.arch_regularization(alphas[:len(self.arch.candidates)], self.current_epoch,
                                                   self.trainer.max_epochs or 1)
            grads = [grad + more for grad, more in zip(grads, extra)] + list(grads[len(extra):])
            self.log("train/arch_reg", term, on_step=True, on_epoch=True)
        flat = self.trainer.strategy.reduce(torch.cat([g.reshape(-1) for g in grads]), reduce_op="mean")
        arch_opt = self.optimizers()[1]
        arch_opt.zero_grad()
        for alpha, grad in zip(alphas, flat.split([a.numel() for a in alphas])):
            alpha.grad = grad.view_as(alpha)
        arch_opt.step()

    def architecture_optimizer(self) -> torch.optim.Optimizer:
        """Adam on the alphas."""
        a_cfg = self.arch_optimizer_config
        return torch.optim.Adam(self.arch.parameters(), lr=a_cfg.lr, betas=tuple(a_cfg.betas),
                                weight_decay=a_cfg.weight_decay)

    # -- Lightning hooks --------------------------------------------------------------------
    def on_fit_start(self) -> None:
        """Start every process from rank 0's alphas."""
        if self.trainer.world_size > 1:
            with torch.no_grad():
                for alpha in self.arch.parameters_list():
                    alpha.copy_(self.trainer.strategy.broadcast(alpha.detach().clone(), src=0))

    def training_step(self, batch: Mapping[str, Batch], batch_idx: int) -> torch.Tensor:
        """The weight step alone during the first ``warmup_epochs`` epochs, then an architecture
        step on the ``val`` half and a weight step on the ``train`` half."""
        if self.current_epoch < self.warmup_epochs:
            return self.weight_step(batch["train"], self.training_architecture(), batch_idx)
        arch_loss = self.architecture_step(batch["train"], batch["val"])
        loss = self.weight_step(batch["train"], self.training_architecture(), batch_idx,
                                {"architecture": arch_loss})
        self.log("train/arch_loss", arch_loss, on_step=True, on_epoch=True)
        return loss
