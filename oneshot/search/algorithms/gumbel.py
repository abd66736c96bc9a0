"""GDAS and SNAS: architectures sampled with the Gumbel-softmax relaxation of ``softmax(alpha)``.

GDAS (Dong & Yang, 2019) runs one sampled candidate per choice point (hard, straight-through);
SNAS (Xie et al., 2019) mixes every candidate with the relaxed sample's weights (soft). Both
anneal the temperature per epoch from ``tau_max`` to ``tau_min``, linearly as the reference
code of both does, and draw the Gumbel noise from generators seeded from ``(seed, step)``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from oneshot.search.algorithms.base import ArchOptimizerConfig, Batch, OneShotSearch, WeightOptimizerConfig
from oneshot.search.architecture import weights_as_constants
from oneshot.search.algorithms.sampling import one_hot_rows, step_generator
from oneshot.search.auxiliary_skip import update_auxiliary_skip
from oneshot.errors import ConfigError
from supernets.auxiliary import add_auxiliary_skips
from supernets.mixed import ArchRow, SparseRow

TAU_SCHEDULES = ("linear", "exponential")
ESTIMATORS = ("reference", "dense")
ARCH_STREAM, WEIGHT_STREAM = 0, 1


def temperature(epoch: int, epochs: int, *, tau_max: float, tau_min: float,
                schedule: str) -> float:
    """The temperature of ``epoch`` (0-based) of ``epochs``: ``tau_max`` at the first epoch,
    ``tau_min`` at the last; in between linear (GDAS's and SNAS's code) or geometric."""
    progress = min(epoch / (epochs - 1), 1.0) if epochs > 1 else 0.0
    if schedule == "exponential":
        return tau_max * (tau_min / tau_max) ** progress
    return tau_max - (tau_max - tau_min) * progress


def gumbel_softmax(alphas: Mapping[str, torch.Tensor], tau: float,
                   generator: torch.Generator) -> dict[str, torch.Tensor]:
    """``softmax((log_softmax(alpha) + g) / tau)`` per label, ``g`` standard Gumbel noise drawn
    on the CPU from ``generator`` (differentiable in ``alpha``)."""
    rows = {}
    for label, alpha in alphas.items():
        uniform = torch.rand(alpha.shape, generator=generator).clamp_(min=torch.finfo().tiny)
        noise = -torch.log(-torch.log(uniform)).to(device=alpha.device, dtype=alpha.dtype)
        rows[label] = torch.softmax((torch.log_softmax(alpha, dim=-1) + noise) / tau, dim=-1)
    return rows


def straight_through(soft: Mapping[str, torch.Tensor], *, dense: bool = False) -> dict[str, SparseRow]:
    """Per label the one-hot row of the soft row's argmax: only that candidate's output counts.

    Its weights are ``hard - soft.detach() + soft``: the values are one-hot, the gradient is the
    soft row's (one host synchronisation for all labels). The gradient of a candidate's weight
    is its output against the gradient of the edge's output, which the other candidates have not
    computed. As in GDAS's reference code, their weights (zero in value) join the edge's output
    as constants (``SparseRow.constants``): each takes the sum of the output's gradient, so the
    chosen candidate is compared with a constant shift of the output. With ``dense`` the other
    candidates run too, without autograd (``SparseRow.frozen``): every weight takes its own
    output's gradient, the straight-through Gumbel-softmax gradient in full, at the cost of
    computing every candidate in the architecture step.
    """
    labels = list(soft)
    indices = torch.stack([soft[label].argmax() for label in labels]).tolist()
    rows = {}
    for label, index in zip(labels, indices):
        row = soft[label]
        hard = torch.zeros_like(row)
        hard[index] = 1.0
        weights = hard - row.detach() + row
        if dense:
            others = tuple(i for i in range(len(row)) if i != index)
            rows[label] = SparseRow(weights, tuple(range(len(row))), frozen=others)
        else:
            rows[label] = SparseRow(weights, (index,), constants=True)
    return rows


def chosen_index(row: SparseRow) -> int:
    """The candidate of a :func:`straight_through` row whose output counts."""
    return next(i for i in row.active if i not in row.frozen)


class GumbelSearch(OneShotSearch):
    """Bilevel search whose steps use Gumbel-softmax samples of the alphas.

    The architecture step takes the gradient of the ``val``-half loss through a fresh sample;
    the weight step trains another sample (without alpha gradient). Validation runs the
    strongest candidate of every choice point, with each batch's BatchNorm statistics.
    ``train/tau`` logs the temperature. With ``auxiliary_skip`` (DARTS-) every choice also adds
    ``beta * skip(x)``, ``beta`` decaying per epoch from 1 to 0
    (:mod:`oneshot.search.auxiliary_skip`).
    """

    hard = False
    dense_estimator = False  # GDAS's algorithm.estimator=dense (see straight_through)

    def __init__(self, supernet: nn.Module, *, num_classes: int, seed: int, tau_max: float,
                 tau_min: float, tau_schedule: str, auxiliary_skip: bool,
                 weight_optimizer: WeightOptimizerConfig, arch_optimizer: ArchOptimizerConfig,
                 alpha_init_std: float) -> None:
        tau_max, tau_min = float(tau_max), float(tau_min)
        if not (math.isfinite(tau_max) and 0 < tau_min <= tau_max):
            raise ConfigError(f"the temperatures must satisfy 0 < tau_min <= tau_max, got "
                              f"tau_min={tau_min} and tau_max={tau_max}")
        if tau_schedule not in TAU_SCHEDULES:
            raise ConfigError(f"unknown tau_schedule '{tau_schedule}'; choose one of: "
                              f"{', '.join(TAU_SCHEDULES)}")
        super().__init__(supernet, num_classes=num_classes, weight_optimizer=weight_optimizer,
                         arch_optimizer=arch_optimizer, alpha_init_std=alpha_init_std,
                         options={"seed": seed, "tau_max": tau_max, "tau_min": tau_min,
                                  "tau_schedule": tau_schedule, "auxiliary_skip": auxiliary_skip})
        self.seed = seed
        self.auxiliary_skip = auxiliary_skip
        if auxiliary_skip:
            add_auxiliary_skips(supernet)
        self.tau_max, self.tau_min, self.tau_schedule = tau_max, tau_min, tau_schedule
        self.tau = tau_max
        self.sizes = {label: len(names) for label, names in self.arch.candidates.items()}

    def sample(self, stream: int) -> Mapping[str, ArchRow]:
        """A relaxed sample of the architecture for this step (differentiable in the alphas)."""
        alphas = {label: self.arch.alphas[label] for label in self.arch.candidates}
        soft = gumbel_softmax(alphas, self.tau, step_generator(self.seed, self.global_step, stream))
        return straight_through(soft, dense=self.dense_estimator) if self.hard else soft

    def training_architecture(self) -> Mapping[str, ArchRow]:
        with torch.no_grad():
            rows = self.sample(WEIGHT_STREAM)
        if self.hard:
            return one_hot_rows({label: chosen_index(row) for label, row in rows.items()},
                                self.sizes, self.device)
        return rows

    def eval_architecture(self) -> Mapping[str, SparseRow]:
        """The strongest candidate of every choice point, with weight 1."""
        labels = list(self.arch.candidates)
        best = torch.stack([self.arch.alphas[label].detach().argmax() for label in labels])
        return one_hot_rows(dict(zip(labels, best.tolist())), self.sizes, self.device)

    def architecture_step(self, batch_w: Batch, batch_a: Batch) -> torch.Tensor:
        x_a, y_a = batch_a
        with weights_as_constants(self.supernet):
            loss = self.criterion(self.supernet(x_a, self.sample(ARCH_STREAM)), y_a)
            grads = torch.autograd.grad(loss, self.arch.parameters_list())
        self.apply_arch_gradients(grads)
        return loss.detach()

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.tau = temperature(self.current_epoch, max(1, self.trainer.max_epochs or 1),
                               tau_max=self.tau_max, tau_min=self.tau_min,
                               schedule=self.tau_schedule)
        self.log("train/tau", self.tau, on_step=False, on_epoch=True)
        if self.auxiliary_skip:
            update_auxiliary_skip(self)


class GdasSearch(GumbelSearch):
    """GDAS: one Gumbel-sampled candidate per choice point runs; its straight-through one-hot
    weight carries the gradient to the alphas (temperature 10 to 0.1 in ``gdas.yaml``).

    The first ``warmup_epochs`` epochs (0 in the paper) train only the weights, on uniformly
    sampled paths while the alphas are at their initial values, so that the architecture
    gradient does not first meet untrained convolutions. ``estimator`` is ``reference`` (the
    reference code's gradient) or ``dense`` (every candidate's output in the gradient; see
    :func:`straight_through`).
    """

    algorithm_name = "gdas"
    hard = True
    ddp_find_unused_parameters = True

    def __init__(self, supernet: nn.Module, *, warmup_epochs: int, estimator: str,
                 **options: Any) -> None:
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise ConfigError(f"algorithm.warmup_epochs must be an integer >= 0, got {warmup_epochs!r}")
        if estimator not in ESTIMATORS:
            raise ConfigError(f"unknown algorithm.estimator '{estimator}'; choose one of: "
                              f"{', '.join(ESTIMATORS)}")
        super().__init__(supernet, **options)
        self.warmup_epochs = warmup_epochs
        self.dense_estimator = estimator == "dense"
        self.hparams.update({"warmup_epochs": warmup_epochs, "estimator": estimator})


class SnasSearch(GumbelSearch):
    """SNAS: every candidate runs, mixed by the soft Gumbel-softmax sample (temperature 1 to
    0.03 in ``snas.yaml``, as in the reference code); the architecture and weight steps
    alternate on the two data halves like the other algorithms here."""

    algorithm_name = "snas"
