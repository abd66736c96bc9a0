"""ENAS (Pham et al., 2018): an LSTM controller samples architectures of the shared supernet.

Every epoch has two phases, as in the paper. First the shared weights take one SGD step per
batch of the weight half, each on a freshly sampled architecture (only its operations run).
Then, inside the epoch's last training step (before validation, the epoch callbacks and the
checkpoint), the controller takes ``controller_steps`` REINFORCE steps: each samples an
architecture, rewards it with its accuracy on the next batch of the architecture half (batch
statistics, no gradient, running statistics untouched) plus ``entropy_weight`` times the
sample's entropy, and moves the policy by ``-log p(arch) * (reward - baseline)``, where the
baseline is an exponential moving average of the rewards (started at the first reward).

After the last epoch (at the start of its validation), ``derive_samples`` architectures are
sampled from the trained controller and scored on ``derive_batches`` validation batches; the
best one is the search's genotype. Before that, :meth:`EnasSearch.genotype` is the epoch's
best sampled architecture (by reward accuracy), or the controller's most likely one before the
first controller phase. Architectures are drawn from generators seeded from ``(seed, global
step)``, and rewards are averaged over processes, so every process samples and learns the same.
Validation (``val/acc``) measures :meth:`EnasSearch.genotype`'s architecture with batch statistics.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any, Iterator, Mapping

import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from oneshot.search.algorithms.base import Batch, SupernetSearch, WeightOptimizerConfig
from oneshot.search.algorithms.controller import Controller, SampledArchitecture
from oneshot.search.algorithms.sampling import step_generator
from oneshot.search.batchnorm import batch_statistics
from oneshot.errors import ConfigError
from supernets.decisions import flat_decisions
from supernets.mixed import ArchRow

WEIGHT_STREAM, CONTROLLER_STREAM, DERIVE_STREAM = 0, 1, 2


@dataclass(frozen=True)
class ControllerConfig:
    """The controller (Pham et al., 2018) and its Adam optimizer (the ENAS reference code's)."""

    hidden_size: int
    temperature: float | None
    tanh_constant: float | None
    entropy_weight: float
    baseline_decay: float
    lr: float
    betas: tuple[float, float]
    eps: float


class EnasSearch(SupernetSearch):
    """Shared supernet weights and an LSTM controller trained by REINFORCE, in alternation."""

    algorithm_name = "enas"
    ddp_find_unused_parameters = True  # a weight step runs only the sampled operations

    def __init__(self, supernet: nn.Module, *, num_classes: int, seed: int,
                 controller_steps: int, derive_samples: int, derive_batches: int,
                 controller: ControllerConfig, weight_optimizer: WeightOptimizerConfig) -> None:
        for name, value, low in (("seed", seed, 0), ("controller_steps", controller_steps, 0),
                                 ("derive_samples", derive_samples, 1),
                                 ("derive_batches", derive_batches, 1),
                                 ("controller.hidden_size", controller.hidden_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"algorithm.{name} must be an integer >= {low}, got {value!r}")
        if not 0.0 <= controller.baseline_decay < 1.0:
            raise ConfigError("algorithm.controller.baseline_decay must be in [0, 1), "
                              f"got {controller.baseline_decay}")
        if controller.entropy_weight < 0 or controller.lr <= 0:
            raise ConfigError("algorithm.controller.entropy_weight must be >= 0 and lr > 0, got "
                              f"{controller.entropy_weight} and {controller.lr}")
        super().__init__(supernet, num_classes=num_classes, weight_optimizer=weight_optimizer,
                         hparams={"seed": seed, "controller_steps": controller_steps,
                                  "derive_samples": derive_samples,
                                  "derive_batches": derive_batches,
                                  "controller": asdict(controller)})
        self.seed = seed
        self.controller_steps = controller_steps
        self.derive_samples = derive_samples
        self.derive_batches = derive_batches
        self.controller_config = controller
        self.decisions = supernet.sampling_decisions()
        self.controller = Controller(self.decisions, hidden_size=controller.hidden_size,
                                     temperature=controller.temperature,
                                     tanh_constant=controller.tanh_constant)
        self.register_buffer("baseline", torch.zeros(()))
        self.register_buffer("controller_updates", torch.zeros((), dtype=torch.long))
        self.best_choices: dict[str, int] | None = None  # the last epoch's best sample
        self.best_accuracy: float | None = None
        self.derived_choices: dict[str, int] | None = None
        self._epoch_stats: dict[str, list[float]] = {}
        self._prob_sums: dict[str, torch.Tensor] = {}

    # -- architectures ------------------------------------------------------------------------
    def sample(self, stream: int) -> SampledArchitecture:
        """An architecture drawn from the controller with the generator of (seed, step, stream)."""
        with torch.autocast(self.device.type, enabled=False):
            return self.controller.sample(step_generator(self.seed, self.global_step, stream))

    def current_choices(self) -> dict[str, int]:
        """The derived architecture, else the last epoch's best sample, else the most likely."""
        if self.derived_choices is not None:
            return self.derived_choices
        if self.best_choices is not None:
            return self.best_choices
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            return self.controller.greedy().choices

    def genotype(self) -> Any:
        """The genotype of :meth:`current_choices`."""
        return self.supernet.sampled_genotype(self.current_choices())

    def eval_architecture(self) -> Mapping[str, ArchRow]:
        return self.supernet.sampled_arch(self.current_choices())

    def accuracy(self, batch: Batch, choices: Mapping[str, int]) -> torch.Tensor:
        """Correct predictions of the sampled architecture on ``batch`` (batch statistics)."""
        x, y = batch
        with torch.no_grad(), batch_statistics(self.supernet):
            logits = self.supernet(x, self.supernet.sampled_arch(choices))
        return (logits.argmax(dim=-1) == y).sum()

    # -- optimization -------------------------------------------------------------------------
    def architecture_optimizer(self) -> torch.optim.Optimizer:
        """Adam on the controller."""
        c = self.controller_config
        return torch.optim.Adam(self.controller.parameters(), lr=c.lr, betas=tuple(c.betas),
                                eps=c.eps)

    def parameters_outside_ddp(self) -> list[nn.Parameter]:
        """The controller: its gradients are equal on every process (rewards are averaged)."""
        return list(self.controller.parameters())

    def training_step(self, batch: Mapping[str, Batch], batch_idx: int) -> torch.Tensor:
        with torch.no_grad():
            choices = self.sample(WEIGHT_STREAM).choices
        loss = self.weight_step(batch["train"], self.supernet.sampled_arch(choices), batch_idx)
        if batch_idx + 1 >= self.trainer.num_training_batches:
            self.controller_phase()
        return loss

    def controller_phase(self) -> None:
        """``controller_steps`` controller steps on batches of the architecture half."""
        self._epoch_stats = {"reward": [], "accuracy": [], "entropy": [], "loss": []}
        self._prob_sums = {}
        self.best_choices, self.best_accuracy = None, None
        for step, batch in enumerate(islice(self._architecture_batches(), self.controller_steps)):
            self.controller_step(batch, step)
        self.loss_guard.check()
        self._log_controller()

    def controller_step(self, batch: Batch, step: int) -> None:
        """One REINFORCE step (``step`` of the phase) on a fresh sample's accuracy on ``batch``."""
        c = self.controller_config
        sample = self.sample(CONTROLLER_STREAM)
        counts = torch.stack([self.accuracy(batch, sample.choices).float(),
                              torch.tensor(float(len(batch[1])), device=self.device)])
        correct, total = self.trainer.strategy.reduce(counts, reduce_op="sum")
        accuracy = correct / total
        reward = accuracy + c.entropy_weight * sample.entropy.detach()
        first = self.controller_updates == 0
        self.baseline.copy_(torch.where(first, reward, c.baseline_decay * self.baseline
                                        + (1.0 - c.baseline_decay) * reward))
        loss = -sample.log_prob * (reward - self.baseline)
        parameters = list(self.controller.parameters())
        grads = torch.autograd.grad(loss, parameters, allow_unused=True)
        optimizer = self.optimizers()[1]
        optimizer.zero_grad()
        for parameter, grad in zip(parameters, grads):
            parameter.grad = torch.zeros_like(parameter) if grad is None else grad
        optimizer.step()
        self.controller_updates += 1
        self.loss_guard.observe({"controller": loss.detach()}, epoch=self.current_epoch, batch=step)
        self._record(sample, float(accuracy), float(reward), float(loss.detach()))

    def _architecture_batches(self) -> Iterator[Batch]:
        """Batches of the architecture half, on the device and augmented, cycled without end."""
        loader = self.trainer.train_dataloader["val"]
        while True:
            empty = True
            for batch in loader:
                empty = False
                yield self.trainer.strategy.batch_to_device(batch)
            if empty:
                raise ConfigError("the architecture half of the data gives no batch; "
                                  "lower data.batch_size or use more data")

    # -- deriving -----------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        """Derive the final architecture at the start of the last epoch's validation."""
        max_epochs = self.trainer.max_epochs
        if (not self.trainer.sanity_checking and max_epochs is not None and max_epochs > 0
                and self.current_epoch + 1 >= max_epochs):
            self.derive()

    def derive(self) -> dict[str, int]:
        """Keep the best of ``derive_samples`` samples on the first ``derive_batches`` batches."""
        loader = self.trainer.val_dataloaders
        batches = [self.trainer.strategy.batch_to_device(batch)
                   for batch in islice(loader, self.derive_batches)]
        generator = step_generator(self.seed, self.global_step, DERIVE_STREAM)
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            candidates = [self.controller.sample(generator).choices
                          for _ in range(self.derive_samples)]
        correct = torch.stack([sum(self.accuracy(batch, choices) for batch in batches).float()
                               for choices in candidates])
        total = torch.tensor(float(sum(len(batch[1]) for batch in batches)), device=self.device)
        correct = self.trainer.strategy.reduce(correct, reduce_op="sum")
        total = self.trainer.strategy.reduce(total, reduce_op="sum")
        accuracy = (correct / total).tolist()
        best = max(range(len(candidates)), key=accuracy.__getitem__)
        self.derived_choices = candidates[best]
        writer = self._tensorboard()
        if writer is not None:
            writer.add_scalar("derive/best_accuracy", accuracy[best], self.current_epoch)
            writer.add_scalar("derive/mean_accuracy", sum(accuracy) / len(accuracy),
                              self.current_epoch)
        return self.derived_choices

    def on_train_end(self) -> None:
        if self.derived_choices is None:
            rank_zero_warn("ENAS derives its genotype in the last epoch's validation, which did "
                           "not run; genotype.json holds the last epoch's best sample")

    # -- checkpoints and logging --------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["enas"] = {"best_choices": self.best_choices,
                              "best_accuracy": self.best_accuracy,
                              "derived_choices": self.derived_choices}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("enas", {})
        self.best_choices = state.get("best_choices")
        self.best_accuracy = state.get("best_accuracy")
        self.derived_choices = state.get("derived_choices")

    def _record(self, sample: SampledArchitecture, accuracy: float, reward: float,
                loss: float) -> None:
        stats = self._epoch_stats
        stats["reward"].append(reward)
        stats["accuracy"].append(accuracy)
        stats["entropy"].append(float(sample.entropy.detach()))
        stats["loss"].append(loss)
        for label, probs in sample.probs.items():
            self._prob_sums[label] = self._prob_sums.get(label, 0) + probs
        if self.best_accuracy is None or accuracy > self.best_accuracy:
            self.best_choices, self.best_accuracy = sample.choices, accuracy

    def _tensorboard(self) -> Any:
        if not self.trainer.is_global_zero:
            return None
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                return logger.experiment
        return None

    def _log_controller(self) -> None:
        """Per epoch (TensorBoard step = epoch): mean reward, accuracy, entropy and loss of the
        phase, the final baseline, the best sample's accuracy and genotype, and every decision's
        probabilities averaged over the phase's samples."""
        writer = self._tensorboard()
        steps = len(self._epoch_stats["reward"])
        if writer is None or steps == 0:
            return
        epoch = self.current_epoch
        for name, values in self._epoch_stats.items():
            writer.add_scalar(f"controller/{name}", math.fsum(values) / steps, epoch)
        writer.add_scalar("controller/baseline", float(self.baseline), epoch)
        writer.add_scalar("controller/best_accuracy", self.best_accuracy, epoch)
        writer.add_text("controller/best_genotype",
                        f"`{self.supernet.sampled_genotype(self.best_choices)}`", epoch)
        for decision in flat_decisions(self.decisions):
            mean = (self._prob_sums[decision.label] / steps).tolist()
            for name, value in zip(decision.candidates, mean):
                writer.add_scalar(f"controller/{decision.label}/{name}", value, epoch)
