"""Train a derived network from scratch: SGD + cosine, auxiliary loss, drop-path ramp."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.aggregation import SumMetric
from torchmetrics.classification import MulticlassAccuracy

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class RetrainOptimizerConfig:
    """SGD with momentum on every weight, cosine-annealed per epoch from ``lr`` to ``lr_min``."""

    lr: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 3e-4
    lr_min: float = 0.0


def retrain_loss(logits: torch.Tensor, logits_aux: torch.Tensor | None, targets: torch.Tensor,
                 auxiliary_weight: float) -> torch.Tensor:
    """Cross-entropy of the logits plus ``auxiliary_weight`` times that of the auxiliary logits."""
    loss = F.cross_entropy(logits, targets)
    if logits_aux is not None and auxiliary_weight:
        loss = loss + auxiliary_weight * F.cross_entropy(logits_aux, targets)
    return loss


def drop_path_at(epoch: int, epochs: int, final: float) -> float:
    """The DARTS drop-path schedule: ``final * epoch / epochs``, from 0 at the first epoch."""
    return final * epoch / max(1, epochs)


class RetrainModule(pl.LightningModule):
    """Trains a derived network whose ``forward(x)`` returns ``(logits, logits_aux or None)``.

    Sets ``network.drop_path_prob`` at the start of every epoch; validates and tests top-1
    accuracy. ``architecture`` (space, genotype dict, meta) is stored in each checkpoint under
    ``"oneshot"``, so the checkpoint names the network it holds. ``channels_last`` and ``compile``
    (``torch.compile``) are speed options for accelerators; both also run on CPU.
    """

    def __init__(self, network: nn.Module, *, num_classes: int,
                 optimizer: RetrainOptimizerConfig = RetrainOptimizerConfig(),
                 auxiliary_weight: float = 0.4, drop_path: float = 0.2,
                 channels_last: bool = False, compile: bool = False,
                 architecture: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({
            "num_classes": num_classes, "optimizer": asdict(optimizer),
            "auxiliary_weight": auxiliary_weight, "drop_path": drop_path,
            "channels_last": channels_last, "compile": compile})
        self.network = network
        self.optimizer_config = optimizer
        self.auxiliary_weight = auxiliary_weight
        self.drop_path = drop_path
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.architecture = dict(architecture or {})
        if channels_last:
            self.network.to(memory_format=torch.channels_last)
        if compile:
            self.network.compile()
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.test_images = SumMetric()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (the auxiliary output is only used by the training loss)."""
        return self.network(x.contiguous(memory_format=self.memory_format))[0]

    def configure_optimizers(self) -> Any:
        cfg = self.optimizer_config
        optimizer = torch.optim.SGD(self.network.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
        epochs = max(1, self.trainer.max_epochs or 1)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs,
                                                              eta_min=cfg.lr_min)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}

    def on_train_epoch_start(self) -> None:
        p = drop_path_at(self.current_epoch, self.trainer.max_epochs or 1, self.drop_path)
        self.network.drop_path_prob = p
        self.log("train/drop_path_prob", p, on_step=False, on_epoch=True)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits, logits_aux = self.network(x.contiguous(memory_format=self.memory_format))
        loss = retrain_loss(logits, logits_aux, y, self.auxiliary_weight)
        self.train_acc(logits.detach(), y)
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.log("val/loss", F.cross_entropy(logits, y), on_epoch=True, sync_dist=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        x, y = batch
        self.test_acc(self(x), y)
        self.test_images(torch.tensor(float(len(y)), device=self.device))
        self.log("test/acc", self.test_acc, on_epoch=True)
        self.log("test/images", self.test_images, on_epoch=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["oneshot"] = self.architecture
