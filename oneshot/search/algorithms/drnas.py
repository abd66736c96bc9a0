"""DrNAS (Chen et al., ICLR 2021): architecture weights sampled from a learned Dirichlet.

Every choice point's weights are a sample of ``Dirichlet(elu(alpha) + 1)`` drawn with the
pathwise (reparameterized) gradient, so the alphas learn a distribution over architectures; a KL
term pulls it toward a ``Dirichlet(prior)``. The supernet is validated and the genotype derived
with the distribution's mean. Progressive learning (the paper's DARTS-space search) runs two
stages of half the epochs each: the first ``warmup`` of each stage trains only the weights, and
between the stages every operation choice keeps only its ``keep`` strongest candidates.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.distributions import Dirichlet, kl_divergence
from torch.nn import functional as F

from oneshot.errors import ConfigError
from oneshot.search.algorithms.base import ArchOptimizerConfig, Batch, OneShotSearch, WeightOptimizerConfig
from oneshot.search.architecture import weights_as_constants
from supernets.choices import OpChoice
from supernets.mixed import ArchRow, SparseRow
from supernets.spaces import get_space
from tasks.seeding import derived_seed

ARCH_STREAM, WEIGHT_STREAM = 0, 1


def concentration(alpha: torch.Tensor) -> torch.Tensor:
    """The Dirichlet concentration of an alpha row: ``elu(alpha) + 1`` (positive, DrNAS code)."""
    return F.elu(alpha) + 1


def dirichlet_rsample(concentrations: Sequence[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """One reparameterized sample of ``Dirichlet(c)`` per row ``c``, differentiable in ``c``.

    The samples are drawn on the CPU (one copy there and back for all rows) from a generator
    seeded with ``seed``, the global random state left as it was, so every process and a resumed
    search draw the same ones.
    """
    if not concentrations:
        return []
    sizes, shapes = [c.numel() for c in concentrations], [c.shape for c in concentrations]
    flat = torch.cat([c.reshape(-1) for c in concentrations]).cpu()
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        draws = [Dirichlet(c.view(shape)).rsample() for c, shape in zip(flat.split(sizes), shapes)]
    device = concentrations[0].device
    if device.type == "cpu":
        return draws
    back = torch.cat([d.reshape(-1) for d in draws]).to(device)
    return [d.view(shape) for d, shape in zip(back.split(sizes), shapes)]


def dirichlet_kl(concentrations: Sequence[torch.Tensor], prior: float) -> torch.Tensor:
    """``sum_k KL(Dirichlet(c_k) || Dirichlet(prior, ..., prior))`` over the rows ``c_k``."""
    return torch.stack([kl_divergence(Dirichlet(c), Dirichlet(torch.full_like(c, prior)))
                        for c in concentrations]).sum()


def top_candidates(alpha: torch.Tensor, kept: torch.Tensor, keep: int) -> torch.Tensor:
    """The mask of the ``keep`` largest alphas among the ``kept`` ones (ties: the earlier)."""
    scores = alpha.detach().masked_fill(~kept, float("-inf"))
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))[:keep]
    mask = torch.zeros_like(kept)
    mask[order] = True
    return mask & kept


class CandidateMask(nn.Module):
    """Which candidates of every choice point are still searched, and the stage reached.

    Buffers, so that checkpoints hold them and a resumed search continues on the same space;
    the indices are also kept on the host (read once after each change), so a step does not wait
    for the device to learn them.
    """

    def __init__(self, candidates: Mapping[str, Sequence[str]]) -> None:
        super().__init__()
        self.labels = list(candidates)
        for index, label in enumerate(self.labels):
            self.register_buffer(f"kept_{index}", torch.ones(len(candidates[label]), dtype=torch.bool))
        self.register_buffer("stage", torch.zeros((), dtype=torch.long))
        self._active: dict[str, tuple[int, ...]] | None = None

    def kept(self, label: str) -> torch.Tensor:
        """The mask of ``label``'s candidates that are still searched."""
        return getattr(self, f"kept_{self.labels.index(label)}")

    def active(self, label: str) -> tuple[int, ...]:
        """The indices of ``label``'s candidates that are still searched."""
        if self._active is None:
            masks = torch.cat([self.kept(name) for name in self.labels]).cpu().split(
                [self.kept(name).numel() for name in self.labels])
            self._active = {name: tuple(mask.nonzero().flatten().tolist())
                            for name, mask in zip(self.labels, masks)}
        return self._active[label]

    def pruned(self, label: str) -> bool:
        """Whether some candidate of ``label`` is no longer searched."""
        return len(self.active(label)) < self.kept(label).numel()

    def prune(self, label: str, mask: torch.Tensor) -> None:
        """Keep only the candidates of ``label`` in ``mask``."""
        self.kept(label).copy_(mask)
        self._active = None

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        self._active = None  # a checkpoint's masks replace these
        super()._load_from_state_dict(*args, **kwargs)


class DrnasSearch(OneShotSearch):
    """Bilevel search on Dirichlet samples of the architecture (see the module docstring).

    ``progressive`` is ``auto`` (two stages on the DARTS cell space, where the paper uses them;
    one stage elsewhere), ``True`` or ``False``; ``keep`` and ``warmup`` only act with two
    stages. Samples come from generators seeded from ``(seed, global step, stream)``.
    """

    algorithm_name = "drnas"
    softmax_alphas = False  # Dirichlet concentrations, not softmax rows
    ddp_find_unused_parameters = True  # pruned candidates no longer run

    def __init__(self, supernet: nn.Module, *, num_classes: int, seed: int, kl_weight: float,
                 prior: float, progressive: bool | str, keep: int, warmup: float,
                 weight_optimizer: WeightOptimizerConfig, arch_optimizer: ArchOptimizerConfig,
                 alpha_init_std: float) -> None:
        if not (progressive == "auto" or isinstance(progressive, bool)):
            raise ConfigError(f"algorithm.progressive must be auto, true or false, got {progressive!r}")
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 2:
            raise ConfigError(f"algorithm.keep must be an integer >= 2 (candidates kept per choice "
                              f"after the first stage), got {keep!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or not 0 <= warmup < 1:
            raise ConfigError(f"algorithm.warmup must be a fraction in [0, 1), got {warmup!r}")
        if isinstance(prior, bool) or not isinstance(prior, (int, float)) or not prior > 0:
            raise ConfigError(f"algorithm.prior must be a positive number, got {prior!r}")
        super().__init__(supernet, num_classes=num_classes, weight_optimizer=weight_optimizer,
                         arch_optimizer=arch_optimizer, alpha_init_std=alpha_init_std,
                         options={"seed": seed, "kl_weight": kl_weight, "prior": prior,
                                  "progressive": progressive, "keep": keep, "warmup": warmup})
        self.seed, self.kl_weight, self.prior = seed, float(kl_weight), float(prior)
        self.keep, self.warmup = keep, float(warmup)
        if progressive == "auto":
            progressive = isinstance(supernet, get_space("darts").supernet)
        self.stages = 2 if progressive else 1
        self.pruning = CandidateMask(self.arch.candidates)
        self.op_labels = [label for label, modules in supernet.choices().items()
                          if isinstance(modules[0], OpChoice)]

    # -- the distribution -------------------------------------------------------------------
    def concentrations(self) -> dict[str, torch.Tensor]:
        """Per label, the concentration of the candidates still searched (differentiable)."""
        return {label: concentration(self.arch.alphas[label])[list(self.pruning.active(label))]
                if self.pruning.pruned(label) else concentration(self.arch.alphas[label])
                for label in self.arch.candidates}

    def _rows(self, values: Mapping[str, torch.Tensor]) -> dict[str, ArchRow]:
        """Full rows with ``values`` at the searched candidates and zeros elsewhere; a pruned
        choice point's row runs only the searched candidates."""
        rows: dict[str, ArchRow] = {}
        for label, value in values.items():
            if not self.pruning.pruned(label):
                rows[label] = value
                continue
            active = self.pruning.active(label)
            index = torch.tensor(active, device=value.device)
            row = torch.zeros(len(self.arch.candidates[label]), dtype=value.dtype, device=value.device)
            rows[label] = SparseRow(row.index_put((index,), value), active)
        return rows

    def sample(self, stream: int) -> dict[str, ArchRow]:
        """A Dirichlet sample of the architecture for this step (differentiable in the alphas)."""
        concentrations = self.concentrations()
        draws = dirichlet_rsample(list(concentrations.values()),
                                  derived_seed(self.seed, self.global_step, stream))
        return self._rows(dict(zip(concentrations, draws)))

    def arch_weights(self) -> dict[str, torch.Tensor]:
        """The mean of the distribution (pruned candidates 0), for deriving and logging."""
        with torch.no_grad():
            means = {label: c / c.sum() for label, c in self.concentrations().items()}
            rows = self._rows(means)
        return {label: row.weights if isinstance(row, SparseRow) else row for label, row in rows.items()}

    def training_architecture(self) -> Mapping[str, ArchRow]:
        with torch.no_grad():
            return self.sample(WEIGHT_STREAM)

    def eval_architecture(self) -> Mapping[str, ArchRow]:
        with torch.no_grad():
            means = {label: c / c.sum() for label, c in self.concentrations().items()}
        return self._rows(means)

    # -- the steps ---------------------------------------------------------------------------
    def architecture_step(self, batch_w: Batch, batch_a: Batch) -> torch.Tensor:
        x_a, y_a = batch_a
        kl = dirichlet_kl(list(self.concentrations().values()), self.prior)
        with weights_as_constants(self.supernet):
            loss = self.criterion(self.supernet(x_a, self.sample(ARCH_STREAM)), y_a)
            grads = torch.autograd.grad(loss + self.kl_weight * kl, self.arch.parameters_list())
        self.apply_arch_gradients(grads)
        self.log("train/kl", kl.detach(), on_step=False, on_epoch=True)
        return loss.detach()

    def stage_start(self, epoch: int, epochs: int) -> tuple[int, int, int]:
        """``(stage, first epoch, epochs)`` of the stage that ``epoch`` belongs to."""
        if self.stages == 1 or epochs < 2:
            return 0, 0, epochs
        half = epochs // 2
        return (0, 0, half) if epoch < half else (1, half, epochs - half)

    def trains_architecture(self, epoch: int, epochs: int) -> bool:
        """Whether ``epoch`` is past its stage's warm-up (always, with one stage)."""
        if self.stages == 1:
            return True
        _, first, length = self.stage_start(epoch, epochs)
        return epoch - first >= int(self.warmup * length)

    def training_step(self, batch: Mapping[str, Batch], batch_idx: int) -> torch.Tensor:
        """The weight step alone during a stage's warm-up, then architecture and weight steps."""
        if self.trains_architecture(self.current_epoch, self.trainer.max_epochs or 1):
            return super().training_step(batch, batch_idx)
        return self.weight_step(batch["train"], self.training_architecture(), batch_idx)

    def prune(self) -> None:
        """Keep the ``keep`` strongest candidates (by alpha) of every operation choice."""
        for label in self.op_labels:
            kept = self.pruning.kept(label)
            if int(kept.sum()) > self.keep:
                self.pruning.prune(label, top_candidates(self.arch.alphas[label], kept, self.keep))

    def on_train_epoch_start(self) -> None:
        """Enter the epoch's stage: prune once when the second stage begins (a search resumed
        after the pruning has its pruned space back from the checkpoint)."""
        super().on_train_epoch_start()
        stage, _, _ = self.stage_start(self.current_epoch, self.trainer.max_epochs or 1)
        if stage > int(self.pruning.stage):
            self.prune()
            self.pruning.stage.fill_(stage)
