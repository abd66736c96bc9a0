"""ProxylessNAS (Cai et al., 2019): binarized paths, two-path alpha updates, latency penalty."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping

import torch
from torch import nn

from oneshot.search.algorithms.base import ArchOptimizerConfig, Batch, OneShotSearch, WeightOptimizerConfig
from oneshot.search.architecture import weights_as_constants
from oneshot.search.algorithms.binary_gates import (
    binary_gate_alpha_grad, rescale_pairs, sample_pairs, sample_paths)
from oneshot.search.algorithms.sampling import step_generator
from oneshot.tables.cost import CostTable, check_input_shape, expected_cost, load_cost_table
from oneshot.errors import ConfigError
from supernets.cost import candidate_costs, mflops
from supernets.mixed import SparseRow

FORMS = ("add", "mul_log")


@dataclass(frozen=True)
class LatencyConfig:
    """The cost term of the architecture loss.

    ``table`` is a latency table from ``python -m oneshot.latency`` (ms); without one the cost
    is the FLOPs of each candidate (MFLOPs), computed when the search starts. The penalty is on
    when the target in the table's unit is set (``target_ms`` with a table, ``target_mflops``
    without): ``add`` is the paper's Eq. 5, ``loss + weight * (E[cost] - target) / target``
    (``lambda_2 = weight / target``); ``mul_log`` is the reference code's default,
    ``loss * (log E[cost] / log target) ** beta``, defined for costs above 1.
    """

    table: str | None
    target_ms: float | None
    target_mflops: float | None
    form: str
    weight: float
    beta: float

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ConfigError(f"unknown algorithm.latency.form '{self.form}'; "
                              f"choose one of: {', '.join(FORMS)}")
        if self.target_ms is not None and self.table is None:
            raise ConfigError("algorithm.latency.target_ms needs algorithm.latency.table=PATH (measure "
                              "one with `python -m oneshot.latency space=NAME out=PATH`), or "
                              "set algorithm.latency.target_mflops for the FLOPs fallback")
        if self.target_mflops is not None and self.table is not None:
            raise ConfigError("algorithm.latency.target_mflops is for searches without a latency "
                              "table; with algorithm.latency.table set algorithm.latency.target_ms")
        target = self.target
        if target is not None and (not isinstance(target, (int, float)) or target <= 0):
            raise ConfigError(f"the latency target must be a positive number, got {target!r}")
        if target is not None and self.form == "mul_log" and target <= 1:
            raise ConfigError(f"algorithm.latency.form=mul_log needs a target above 1, got {target} "
                              "(log changes sign below 1); use form=add")
        for name in ("weight", "beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"algorithm.latency.{name} must be a number >= 0, got {value!r}")

    @property
    def target(self) -> float | None:
        """The target in the cost's unit, or ``None`` (no penalty)."""
        return self.target_ms if self.table is not None else self.target_mflops

    @property
    def unit(self) -> str:
        """``ms`` with a latency table, ``MFLOPs`` without."""
        return "ms" if self.table is not None else "MFLOPs"


class ProxylessSearch(OneShotSearch):
    """Binary gates: the weight step trains one sampled path per choice point; the
    architecture step samples two, runs the active one (the other without autograd) and
    updates only their two alphas by the binary-gate gradient, then rescales them so every
    other candidate keeps its probability.

    Samples come from generators seeded from ``(seed, global step)``, so every process draws
    the same architecture. The cost term (see :class:`LatencyConfig`) adds the gradient of the
    expected cost ``sum_i p_i cost_i`` to every alpha of a choice point, as in the reference code.
    """

    algorithm_name = "proxyless"
    ddp_find_unused_parameters = True  # a weight step runs one sampled path per choice point

    def __init__(self, supernet: nn.Module, *, num_classes: int, seed: int,
                 latency: LatencyConfig, weight_optimizer: WeightOptimizerConfig,
                 arch_optimizer: ArchOptimizerConfig, alpha_init_std: float) -> None:
        super().__init__(supernet, num_classes=num_classes, weight_optimizer=weight_optimizer,
                         arch_optimizer=arch_optimizer, alpha_init_std=alpha_init_std,
                         options={"seed": seed, "latency": asdict(latency)})
        self.seed = seed
        self.latency = latency
        self.labels = list(self.arch.candidates)
        self.sizes = [len(self.arch.candidates[label]) for label in self.labels]
        self.offsets = torch.tensor([0, *self.sizes[:-1]]).cumsum(0)
        self.costs: dict[str, torch.Tensor] | None = None
        self.unchecked_table: CostTable | None = None  # its image shape is checked on the first batch
        if latency.table is not None:
            self.unchecked_table = load_cost_table(latency.table)
            self.costs = self.unchecked_table.cost_vectors(self.arch.candidates)

    # -- architectures ----------------------------------------------------------------------
    def _flat_alpha(self) -> torch.Tensor:
        return torch.cat([alpha.detach() for alpha in self.arch.parameters_list()])

    def _one_hot(self, local: torch.Tensor) -> torch.Tensor:
        """A flat vector with a 1 at candidate ``local[k]`` of every choice point ``k``."""
        flat = torch.zeros(sum(self.sizes))
        flat[self.offsets + local] = 1.0
        return flat.to(self.device)

    def _rows(self, flat_weights: torch.Tensor, local: torch.Tensor,
              frozen: bool = False) -> dict[str, SparseRow]:
        """Per choice point ``k`` a SparseRow over its slice of ``flat_weights`` that computes
        candidates ``local[k]`` (a row of one or two); with ``frozen`` the second runs without
        autograd."""
        return {label: SparseRow(weights, tuple(active), tuple(active[1:]) if frozen else ())
                for label, weights, active in zip(self.labels, flat_weights.split(self.sizes),
                                                  local.tolist())}

    def training_architecture(self) -> Mapping[str, SparseRow]:
        """One path per choice point drawn from ``softmax(alpha)``, weight 1, no alpha gradient."""
        paths = sample_paths(self._flat_alpha(), self.sizes,
                             step_generator(self.seed, self.global_step, 1))
        return self._rows(self._one_hot(paths), paths.unsqueeze(1))

    def eval_architecture(self) -> Mapping[str, SparseRow]:
        """The derived architecture: the strongest candidate of every choice point."""
        best = torch.stack([alpha.detach().argmax() for alpha in self.arch.parameters_list()]).cpu()
        return self._rows(self._one_hot(best), best.unsqueeze(1))

    # -- the architecture step --------------------------------------------------------------
    def cost_vectors(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per choice point, the cost of each candidate: the table's, or FLOPs at ``x``'s shape
        (computed once). A table measured at another image shape than ``x``'s is refused."""
        if self.unchecked_table is not None:
            check_input_shape(self.unchecked_table, self.latency.table, tuple(x.shape[1:]))
            self.unchecked_table = None
        if self.costs is None:
            table = candidate_costs(self.supernet, (1, *x.shape[1:]), mflops)
            self.costs = {label: torch.tensor([table[label][name] for name in names])
                          for label, names in self.arch.candidates.items()}
        return self.costs

    def penalized(self, loss: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
        """The task loss with the cost term of :class:`LatencyConfig` (unchanged without target)."""
        cfg, target = self.latency, self.latency.target
        if target is None:
            return loss
        if cfg.form == "add":
            return loss + cfg.weight * (cost - target) / target
        if float(cost) <= 1.0:
            raise ConfigError(f"algorithm.latency.form=mul_log needs an expected cost above 1, got "
                              f"{float(cost):.3g} {cfg.unit} (log changes sign below 1); use form=add")
        return loss * (torch.log(cost) / math.log(target)) ** cfg.beta

    def architecture_step(self, batch_w: Batch, batch_a: Batch) -> torch.Tensor:
        x, y = batch_a
        costs = self.cost_vectors(x)
        alphas = self.arch.parameters_list()
        flat_alpha = self._flat_alpha()
        local = sample_pairs(flat_alpha, self.sizes, step_generator(self.seed, self.global_step, 0))
        gates = self._one_hot(local[:, 0]).requires_grad_()
        with weights_as_constants(self.supernet):
            loss = self.penalized(self.criterion(self.supernet(x, self._rows(gates, local, frozen=True)), y),
                                  expected_cost(self.arch.softmax(), costs))
            gate_grad, *direct = torch.autograd.grad(loss, [gates, *alphas], allow_unused=True)
        pairs = (local + self.offsets.unsqueeze(1)).to(flat_alpha.device)
        grads = binary_gate_alpha_grad(flat_alpha, gate_grad, pairs).split(self.sizes)
        self.apply_arch_gradients([g if d is None else g + d for g, d in zip(grads, direct)])
        with torch.no_grad():
            rescaled = rescale_pairs(self._flat_alpha(), flat_alpha, pairs).split(self.sizes)
            for alpha, value in zip(alphas, rescaled):
                alpha.copy_(value)
        return loss.detach()

    def on_train_epoch_end(self) -> None:
        if self.costs is not None:
            with torch.no_grad():
                cost = expected_cost(self.arch.softmax(), self.costs)
            tag = "expected_latency_ms" if self.latency.unit == "ms" else "expected_mflops"
            self.log(f"arch/{tag}", cost, on_epoch=True)
        super().on_train_epoch_end()
