"""Why GDAS drifts to pools and ``none`` on a small budget: two measurements on space=nb201.

``paths``: the supernet trained three ways for ``--steps`` steps (batch 64, SGD lr 0.025 cosine,
momentum 0.9, weight decay 3e-4, gradient clipping 5, as gdas.yaml): always one fixed cell (the
benchmark's optimum), always a cell of 3x3 convolutions, and one uniformly sampled path per step,
which is GDAS's weight step while its alphas are still near uniform. Prints the training accuracy
of every ``--report`` steps. Sampled paths learn far slower than either fixed cell: every step
trains another network, and a weight sees other inputs each time.

``estimator``: for a search run's supernet (e.g. a gdas search with
``algorithm.warmup_epochs`` equal to ``trainer.max_epochs``, which trains on uniform paths only),
the expected alpha gradient of GDAS's straight-through estimator (``--estimator reference``: the
chosen candidate's one-hot weight, the others' weights added as constants, as its reference code;
``dense``: every candidate's output, as ``algorithm.estimator=dense``) at uniform alphas, over
``--batches`` sampled paths on the architecture half; the candidate it favours on every edge; and
the supernet's accuracy (batch statistics) of whole cells, which is what a good estimator should
follow. A run searched with ``algorithm.auxiliary_skip=true`` is measured with its auxiliary
skips at the weight of its last epoch; ``--skip-beta B`` sets that weight (0 measures without
them) or adds the skips to a run that had none.

    python benchmarks/gdas_diagnosis.py paths --task cifar10 --root DATA --steps 780
    python benchmarks/gdas_diagnosis.py estimator RUN_DIR --batches 400 [--skip-beta 1]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.nn import functional as F

from oneshot.search.algorithms.gumbel import ESTIMATORS, straight_through
from oneshot.search.algorithms.sampling import one_hot_rows
from oneshot.search.auxiliary_skip import auxiliary_skip_weight
from oneshot.search.batchnorm import batch_statistics
from oneshot.storage.torchfile import load_weights_only
from oneshot.training.datamodules import SearchDataModule
from supernets.auxiliary import add_auxiliary_skips, set_auxiliary_skip_weight
from supernets.mixed import SparseRow
from supernets.nb201.genotype import Nb201Genotype
from supernets.nb201.search import Nb201Supernet
from supernets.spaces import create_supernet
from tasks import load_task
from tasks.split import fit_subset

CELLS = {
    "optimum": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "all nor_conv_3x3": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "all avg_pool_3x3": "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "all skip_connect": "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
}
"""Whole cells in the benchmark's text form (the optimum: 94.37% CIFAR-10 test accuracy)."""


def cell_ops(text: str) -> dict[str, str]:
    """The candidate of every edge label of a cell given as text."""
    choices = Nb201Supernet.genotype_choices(Nb201Genotype.from_text(text))
    return {label: str(op) for label, op in choices.items()}


def random_ops(choice_points: dict[str, list[str]], generator: torch.Generator) -> dict[str, str]:
    """One uniformly drawn candidate per edge label."""
    return {label: candidates[int(torch.randint(len(candidates), (1,), generator=generator))]
            for label, candidates in choice_points.items()}


def path_rows(choice_points: dict[str, list[str]], names: dict[str, str]) -> dict[str, SparseRow]:
    """Rows that run only candidate ``names[label]`` on every edge, with weight 1."""
    return one_hot_rows({label: candidates.index(names[label]) for label, candidates in choice_points.items()},
                        {label: len(candidates) for label, candidates in choice_points.items()})


def train_paths(args: argparse.Namespace) -> None:
    """Training accuracy per ``--report`` steps: fixed cells against uniformly sampled paths."""
    options = {"root": args.root, "download": False} if args.root else {}
    dataset = load_task(args.task, **options)
    data = SearchDataModule(dataset, batch_size=64, seed=0, subset=args.subset)
    for regime in ("optimum", "all nor_conv_3x3", "uniform paths"):
        torch.manual_seed(0)
        net = create_supernet("nb201", num_classes=dataset.num_classes, channels=args.channels,
                              layers=args.layers).train()
        points = net.choice_points()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps, eta_min=0.001)
        generator = torch.Generator().manual_seed(0)
        accuracies, correct, seen = [], 0, 0
        batches = itertools.chain.from_iterable(itertools.repeat(data.train_dataloader()))
        for step, (batch, _, _) in zip(range(1, args.steps + 1), batches):  # CombinedLoader's
            x, y = batch["train"]
            names = cell_ops(CELLS[regime]) if regime in CELLS else random_ops(points, generator)
            logits = net(data.augment(x, generator=generator), path_rows(points, names))
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optimizer.step()
            schedule.step()
            correct, seen = correct + int((logits.argmax(1) == y).sum()), seen + len(y)
            if step % args.report == 0:
                accuracies.append(correct / seen)
                correct = seen = 0
        print(f"{regime:>16}: train acc per {args.report} steps " + " ".join(f"{a:.3f}" for a in accuracies))


def expected_gdas_gradient(net: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
                           samples: int, generator: torch.Generator,
                           estimator: str = "reference") -> tuple[torch.Tensor, torch.Tensor]:
    """Per edge (row) and candidate, the mean alpha gradient of GDAS's ``estimator`` at
    uniform alphas over ``samples`` uniformly drawn paths, cycling through ``batches`` (the
    temperature only scales it and is left out); and the mean gradient of a chosen candidate's
    one-hot weight, the derivative of the loss by a gain on its output."""
    points = net.choice_points()
    expected = torch.zeros(len(points), max(len(c) for c in points.values()))
    gain, chosen = torch.zeros_like(expected), torch.zeros_like(expected)
    for x, y in itertools.islice(itertools.cycle(batches), samples):
        names = random_ops(points, generator)
        weights = {label: F.one_hot(torch.tensor(c.index(names[label])), len(c)).float().requires_grad_()
                   for label, c in points.items()}  # as straight-through rows: value and gradient
        rows = straight_through(weights, dense=estimator == "dense")
        loss = F.cross_entropy(net(x, rows), y)
        grads = torch.autograd.grad(loss, list(weights.values()))
        for edge, ((label, candidates), grad) in enumerate(zip(points.items(), grads)):
            uniform = torch.full_like(grad, 1.0 / len(grad))  # through softmax(alpha) at uniform alphas
            expected[edge, :len(grad)] += uniform * (grad - (uniform * grad).sum()) / samples
            index = candidates.index(names[label])
            gain[edge, index] += grad[index]
            chosen[edge, index] += 1
    return expected, gain / chosen.clamp(min=1)


def estimator_bias(args: argparse.Namespace) -> None:
    """The expected GDAS alpha gradient per edge and candidate, and whole cells' accuracies."""
    if args.skip_beta is not None and not (math.isfinite(args.skip_beta) and args.skip_beta >= 0):
        raise SystemExit(f"error: --skip-beta must be a number >= 0 (the auxiliary skips' "
                         f"weight; 0 measures without them), got {args.skip_beta}")
    checkpoint = args.run_dir / "checkpoints" / "last.ckpt"
    if not (args.run_dir / "config.yaml").is_file() or not checkpoint.is_file():
        raise SystemExit(f"error: {args.run_dir} is not a search run dir (config.yaml and "
                         "checkpoints/last.ckpt); pass the run dir of a finished search")
    cfg = OmegaConf.load(args.run_dir / "config.yaml")
    if cfg.space.name != "nb201":
        raise SystemExit(f"error: {args.run_dir} searched space={cfg.space.name}; this "
                         "measurement needs a space=nb201 search")
    task = {k: v for k, v in OmegaConf.to_container(cfg.task, resolve=True).items()
            if k not in ("name", "subset", "subset_at_most")}
    dataset = load_task(cfg.task.name, **task)
    subset, _ = fit_subset(cfg.task.subset, cfg.task.get("subset_at_most"), len(dataset.train_labels))
    data = SearchDataModule(dataset, batch_size=64, seed=cfg.seed, eval_batch_size=args.eval_batch,
                            subset=subset)
    space = {k: v for k, v in OmegaConf.to_container(cfg.space, resolve=True).items() if k != "name"}
    net = create_supernet(cfg.space.name, num_classes=dataset.num_classes, **space).train()
    beta = args.skip_beta
    if beta is None and cfg.get("algorithm", {}).get("auxiliary_skip", False):
        epochs = int(cfg.trainer.max_epochs)
        beta = auxiliary_skip_weight(epochs - 1, epochs)
    if beta is not None:  # before loading: the skips are part of the run's supernet
        add_auxiliary_skips(net)
        set_auxiliary_skip_weight(net, beta)
        print(f"with the auxiliary skips (DARTS-) at weight {beta:g}")
    state = load_weights_only(checkpoint)["state_dict"]
    net.load_state_dict({k.removeprefix("supernet."): v for k, v in state.items()
                         if k.startswith("supernet.")})
    points = net.choice_points()
    batches = [(data.evaluate(x), y) for x, y in data.val_dataloader()]
    expected, gain = expected_gdas_gradient(net, batches, args.batches, torch.Generator().manual_seed(0),
                                            args.estimator)
    candidates = next(iter(points.values()))
    print(f"expected d loss / d alpha x 1e3, estimator {args.estimator}, over {args.batches} "
          f"sampled paths (gradient descent raises the most negative):")
    print(" " * 12 + " ".join(f"{c:>13}" for c in candidates) + "  favoured")
    for (label, _), row in zip(points.items(), expected):
        print(f"{label:>12}" + " ".join(f"{1e3 * v:13.3f}" for v in row.tolist())
              + f"  {candidates[int(row.argmin())]}")
    print("mean d loss / d gain of the chosen candidate's output x 1e3 (positive: the loss would "
          "rather shrink it):")
    for (label, _), row in zip(points.items(), gain):
        print(f"{label:>12}" + " ".join(f"{1e3 * v:13.3f}" for v in row.tolist()))
    with torch.no_grad(), batch_statistics(net):
        for name, cell in CELLS.items():
            rows = path_rows(points, cell_ops(cell))
            hits = sum(int((net(x, rows).argmax(1) == y).sum()) for x, y in batches)
            print(f"supernet accuracy, {name}: {hits / sum(len(y) for _, y in batches):.3f}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    paths = modes.add_parser("paths", help="fixed cells vs uniformly sampled paths")
    paths.add_argument("--task", default="cifar10")
    paths.add_argument("--root", default=None, help="the task's data dir (no download)")
    paths.add_argument("--subset", type=int, default=10000, help="training images (two halves)")
    paths.add_argument("--channels", type=int, default=8)
    paths.add_argument("--layers", type=int, default=2)
    paths.add_argument("--steps", type=int, default=780)
    paths.add_argument("--report", type=int, default=78)
    estimator = modes.add_parser("estimator", help="GDAS's expected alpha gradient on a run's supernet")
    estimator.add_argument("run_dir", type=Path)
    estimator.add_argument("--batches", type=int, default=400)
    estimator.add_argument("--eval-batch", type=int, default=64)
    estimator.add_argument("--estimator", choices=ESTIMATORS, default="reference",
                           help="algorithm.estimator: reference (GDAS's code) or dense")
    estimator.add_argument("--skip-beta", type=float, default=None,
                           help="the auxiliary skips' weight (default: a run with "
                                "algorithm.auxiliary_skip at its last epoch's, else none)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    train_paths(args) if args.mode == "paths" else estimator_bias(args)


if __name__ == "__main__":
    main(sys.argv[1:])
