"""SDARTS (Chen & Hsieh, ICML 2020): the weight step trains perturbed architecture weights.

The architecture step is DARTS's. Before each weight step the softmax weights ``w`` get a
perturbation ``delta`` with ``|delta| <= epsilon`` on every entry:

- ``random`` (SDARTS-RS): ``delta ~ U(-epsilon, epsilon)``;
- ``adversarial`` (SDARTS-ADV): ``delta`` maximizes the weight step's loss, found by PGD from a
  uniform random start: ``attack_steps`` signed-gradient steps of ``2 * epsilon / attack_steps``
  from the current perturbed weights, the change clamped back into ``[-epsilon, epsilon]``; if
  the attack ends below the unperturbed loss the step trains ``w`` unperturbed (as the
  reference code does).

The weights the step sees are ``w + delta`` clamped to ``[0, 1]`` and renormalized per row (a
row clamped to all zeros keeps only its largest entry), as the reference code's ``clip``.
``epsilon`` grows per epoch linearly from ``epsilon_start`` to ``epsilon`` (the reference's
``0.03 + (0.3 - 0.03) * epoch / epochs``). The attack's forward passes use the batch statistics
the weight step uses and leave the BatchNorm running statistics as they were (the reference
code attacks in evaluation mode). Draws come from generators seeded by ``(seed, step)``.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Mapping

import torch
from torch import nn

from oneshot.errors import ConfigError
from oneshot.search.algorithms.base import ArchOptimizerConfig, Batch, WeightOptimizerConfig
from oneshot.search.algorithms.darts import DartsSearch
from oneshot.search.algorithms.sampling import step_generator
from supernets.mixed import ArchRow

PERTURBATIONS = ("random", "adversarial")
PERTURBATION_STREAM = 0

Rows = Mapping[str, torch.Tensor]


def perturbation_radius(epoch: int, epochs: int, *, start: float, end: float) -> float:
    """``epsilon`` of ``epoch`` (0-based) of ``epochs``: ``start + (end - start) * epoch / epochs``."""
    return start + (end - start) * epoch / epochs


def project_rows(rows: Rows) -> dict[str, torch.Tensor]:
    """Each row clamped to ``[0, 1]`` and divided by its sum; a row that clamps to all zeros
    becomes one-hot at its largest entry."""
    projected = {}
    for label, row in rows.items():
        clamped = row.clamp(0.0, 1.0)
        one_hot = torch.zeros_like(row).scatter_(0, row.argmax().view(1), 1.0)
        clamped = torch.where(clamped.sum() > 0, clamped, one_hot)
        projected[label] = clamped / clamped.sum()
    return projected


def perturbed(weights: Rows, delta: Rows) -> dict[str, torch.Tensor]:
    """The rows ``weights + delta`` projected back to valid mixing weights."""
    return project_rows({label: weights[label] + delta[label] for label in weights})


def uniform_delta(weights: Rows, epsilon: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``U(-epsilon, epsilon)`` per entry of every row, drawn on the CPU from ``generator``."""
    delta = {}
    for label, row in weights.items():
        noise = (2.0 * torch.rand(row.shape, generator=generator) - 1.0) * epsilon
        delta[label] = noise.to(device=row.device, dtype=row.dtype)
    return delta


def adversarial_delta(loss_of: Callable[[Rows], torch.Tensor], weights: Rows, epsilon: float,
                      steps: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The L-infinity PGD perturbation of ``weights`` (radius ``epsilon``) that maximizes
    ``loss_of(perturbed(weights, delta))``, from a uniform random start; all zeros when the
    attack ends below the unperturbed loss."""
    weights = {label: row.detach() for label, row in weights.items()}
    step_size = 2.0 * epsilon / steps
    delta = uniform_delta(weights, epsilon, generator)
    for _ in range(steps):
        rows = {label: row.requires_grad_() for label, row in perturbed(weights, delta).items()}
        grads = torch.autograd.grad(loss_of(rows), list(rows.values()))
        delta = {label: (rows[label].detach() - weights[label] + step_size * grad.sign())
                 .clamp(-epsilon, epsilon) for label, grad in zip(rows, grads)}
    with torch.no_grad():
        if loss_of(perturbed(weights, delta)) < loss_of(weights):
            return {label: torch.zeros_like(row) for label, row in weights.items()}
    return delta


@contextlib.contextmanager
def buffers_kept(module: nn.Module) -> Iterator[None]:
    """Inside, forward passes may update ``module``'s buffers (BatchNorm running statistics);
    on leaving, every buffer is back to its value on entering."""
    saved = [buffer.detach().clone() for buffer in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(module.buffers(), saved):
                buffer.copy_(value)


class SdartsSearch(DartsSearch):
    """DARTS whose weight step sees the softmax weights randomly or adversarially perturbed.

    ``perturbation`` is ``random`` or ``adversarial``; the radius grows from ``epsilon_start``
    to ``epsilon`` over the epochs (``train/epsilon``); ``attack_steps`` PGD steps for
    ``adversarial``. The architecture step, validation and the genotype are DARTS's.
    """

    algorithm_name = "sdarts"

    def __init__(self, supernet: nn.Module, *, num_classes: int, seed: int, perturbation: str,
                 epsilon_start: float, epsilon: float, attack_steps: int, unrolled: bool,
                 auxiliary_skip: bool, weight_optimizer: WeightOptimizerConfig,
                 arch_optimizer: ArchOptimizerConfig, alpha_init_std: float) -> None:
        if perturbation not in PERTURBATIONS:
            raise ConfigError(f"unknown algorithm.perturbation '{perturbation}'; choose one of: "
                              f"{', '.join(PERTURBATIONS)}")
        if not 0 <= epsilon_start <= epsilon:
            raise ConfigError(f"the perturbation radius must satisfy 0 <= epsilon_start <= "
                              f"epsilon, got epsilon_start={epsilon_start} and epsilon={epsilon}")
        if attack_steps < 1:
            raise ConfigError(f"algorithm.attack_steps must be at least 1, got {attack_steps}")
        super().__init__(supernet, num_classes=num_classes, unrolled=unrolled,
                         auxiliary_skip=auxiliary_skip, weight_optimizer=weight_optimizer,
                         arch_optimizer=arch_optimizer, alpha_init_std=alpha_init_std,
                         options={"seed": seed, "perturbation": perturbation,
                                  "epsilon_start": epsilon_start, "epsilon": epsilon,
                                  "attack_steps": attack_steps})
        self.seed = seed
        self.perturbation = perturbation
        self.epsilon_start, self.epsilon_end = float(epsilon_start), float(epsilon)
        self.attack_steps = attack_steps
        self.epsilon = self.epsilon_start

    def perturbation_delta(self, batch: Batch, weights: Rows) -> dict[str, torch.Tensor]:
        """This step's perturbation of ``weights`` (adversarial: against ``batch``'s loss)."""
        generator = step_generator(self.seed, self.global_step, PERTURBATION_STREAM)
        if self.perturbation == "random":
            return uniform_delta(weights, self.epsilon, generator)
        x, y = batch

        def loss_of(rows: Rows) -> torch.Tensor:
            return self.criterion(self.supernet(x, rows), y)

        with buffers_kept(self.supernet):
            return adversarial_delta(loss_of, weights, self.epsilon, self.attack_steps, generator)

    def weight_step(self, batch: Batch, arch: Mapping[str, ArchRow], batch_idx: int,
                    other_losses: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """DARTS's weight step on the perturbed softmax weights."""
        weights = dict(arch)  # DARTS trains dense softmax rows
        rows = perturbed(weights, self.perturbation_delta(batch, weights))
        return super().weight_step(batch, rows, batch_idx, other_losses)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.epsilon = perturbation_radius(self.current_epoch, max(1, self.trainer.max_epochs or 1),
                                           start=self.epsilon_start, end=self.epsilon_end)
        self.log("train/epsilon", self.epsilon, on_step=False, on_epoch=True)
