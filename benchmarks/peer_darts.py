"""Our DARTS search step against the original DARTS code's step maths, in the same run, alternating.

"Original" is a re-implementation of quark0/darts's ``train_search.py`` step on the same supernet
modules: every edge sums all its candidates' weighted outputs, the zeros of ``none`` included;
the architecture step backpropagates the alpha-half loss through everything (weights included)
and, for second order, builds an unrolled *copy of the model* for the virtual step and
takes the Hessian-vector product by finite differences; then the weight step with gradient
clipping. It runs on fixed random tensors in NCHW, as the 2018 code did (no data loading, which
favours it), on the CPU. "Ours" is the real Lightning loop with our data pipeline (``oneshot.train``'s
defaults). After each of our steps one original step runs, so both see the same machine state.

    python benchmarks/peer_darts.py                              # paper config, first order
    python benchmarks/peer_darts.py --order second --batch 32 --channels 8 --layers 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import types

import pytorch_lightning as pl
import torch
from torch import nn

from common import StepTimer, device_and_peak, search_data, timing
from oneshot.search.algorithms import create_algorithm
from supernets.batchnorm import use_batchnorm_wide_view
from supernets.depthwise import use_depthwise_fast_paths
from supernets.maxpool import MaxPool
from supernets.mixed import MixedOp, set_relu_sharing
from supernets.native import use_native_kernels
from supernets.spaces import create_supernet


def _torch_max_pools(module: nn.Module) -> None:
    """Replace our index-free :class:`MaxPool` modules by ``nn.MaxPool2d`` (same results)."""
    for name, child in module.named_children():
        if isinstance(child, MaxPool):
            setattr(module, name, nn.MaxPool2d(child.kernel_size, child.stride, child.padding))
        else:
            _torch_max_pools(child)


def _original_mixed_forward(edge: MixedOp, x: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """The original ``MixedOp.forward``: every candidate, ``none`` (``x.mul(0.)``) included."""
    return sum(w * op(x) for w, op in zip(row, edge.ops))


def _original_mixing(module: nn.Module) -> None:
    """Make every edge of ``module`` mix its candidates as the original code does."""
    for edge in module.modules():
        if isinstance(edge, MixedOp):
            edge.forward = types.MethodType(_original_mixed_forward, edge)


class OriginalDarts:
    """The step maths of the original DARTS code (architect.py + train_search.py)."""

    def __init__(self, supernet: nn.Module, *, unrolled: bool, lr: float = 0.025,
                 momentum: float = 0.9, weight_decay: float = 3e-4) -> None:
        set_relu_sharing(supernet, False)  # every candidate computes its own ReLU, as there
        _torch_max_pools(supernet)  # and max pooling stores its indices
        use_depthwise_fast_paths(supernet, False)  # and depthwise convolutions are torch's
        use_batchnorm_wide_view(supernet, False)  # and so are its BatchNorms
        use_native_kernels(supernet, False)  # and its pools (no C kernels of ours)
        _original_mixing(supernet)  # and every edge computes its none candidate and sums
        self.model = supernet
        self.alphas = {label: (1e-3 * torch.randn(len(names))).requires_grad_()
                       for label, names in supernet.choice_points().items()}
        self.unrolled, self.lr, self.momentum, self.weight_decay = unrolled, lr, momentum, weight_decay
        self.w_opt = torch.optim.SGD(supernet.parameters(), lr, momentum=momentum,
                                     weight_decay=weight_decay)
        self.a_opt = torch.optim.Adam(self.alphas.values(), lr=3e-4, betas=(0.5, 0.999),
                                      weight_decay=1e-3)
        self.criterion = nn.CrossEntropyLoss()

    def _loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        arch = {label: torch.softmax(alpha, -1) for label, alpha in self.alphas.items()}
        return self.criterion(model(x, arch), y)

    def step(self, train: tuple[torch.Tensor, torch.Tensor],
             valid: tuple[torch.Tensor, torch.Tensor]) -> None:
        """One architecture step on ``valid`` then one weight step on ``train``."""
        self.a_opt.zero_grad()
        if self.unrolled:
            self._unrolled_backward(train, valid)
        else:
            self._loss(self.model, *valid).backward()  # the original backpropagates into weights too
        self.a_opt.step()
        self.w_opt.zero_grad()
        self._loss(self.model, *train).backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.w_opt.step()

    def _unrolled_backward(self, train: tuple[torch.Tensor, torch.Tensor],
                           valid: tuple[torch.Tensor, torch.Tensor]) -> None:
        weights = list(self.model.parameters())
        grads = torch.autograd.grad(self._loss(self.model, *train), weights)
        unrolled = copy.deepcopy(self.model)  # the original builds a new model and loads theta
        with torch.no_grad():
            for w, u, g in zip(weights, unrolled.parameters(), grads):
                state = self.w_opt.state.get(w, {})
                moment = state.get("momentum_buffer", torch.zeros_like(w)) * self.momentum
                u.copy_(w - self.lr * (moment + g + self.weight_decay * w))
        self._loss(unrolled, *valid).backward()
        vector = [u.grad if u.grad is not None else torch.zeros_like(u)
                  for u in unrolled.parameters()]
        radius = 0.01 / torch.cat([v.flatten() for v in vector]).norm()
        implicit = self._hessian_vector(vector, radius, train)
        for alpha, h in zip(self.alphas.values(), implicit):
            alpha.grad = alpha.grad - self.lr * h

    def _hessian_vector(self, vector: list[torch.Tensor], radius: torch.Tensor,
                        train: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        weights, alphas = list(self.model.parameters()), list(self.alphas.values())
        grads = []
        for sign in (1.0, -2.0):
            with torch.no_grad():
                for w, v in zip(weights, vector):
                    w.add_(v, alpha=sign * float(radius))
            grads.append(torch.autograd.grad(self._loss(self.model, *train), alphas))
        with torch.no_grad():
            for w, v in zip(weights, vector):
                w.add_(v, alpha=float(radius))
        return [(p - n) / (2 * radius) for p, n in zip(*grads)]


class AlternatingPeer(pl.Callback):
    """After each of our training steps, time one original step on fixed random tensors."""

    def __init__(self, original: OriginalDarts, batch: int) -> None:
        self.original = original
        self.inputs = [(torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,)))
                       for _ in range(2)]
        self.seconds: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        start = time.perf_counter()
        self.original.step(*self.inputs)
        self.seconds.append(time.perf_counter() - start)


def run(args: argparse.Namespace) -> None:
    steps = args.warmup + args.steps
    pl.seed_everything(0, verbose=False)
    datamodule = search_data(args.batch, steps, channels_last=True)
    sizes = {"channels": args.channels, "layers": args.layers}
    ours = create_supernet("darts", num_classes=10, **sizes).to(memory_format=torch.channels_last)
    module = create_algorithm("darts", ours, num_classes=10, cfg={"unrolled": args.order == "second"})
    original = OriginalDarts(create_supernet("darts", num_classes=10, **sizes),
                             unrolled=args.order == "second")
    timer, peer = StepTimer(), AlternatingPeer(original, args.batch)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=steps,
                         limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[timer, peer], use_distributed_sampler=False)
    trainer.fit(module, datamodule=datamodule)
    mine, theirs = timer.seconds[args.warmup:], peer.seconds[args.warmup:]
    name, peak_gib, measured = device_and_peak(trainer.strategy.root_device)
    print(f"darts {args.order}-order | batch {args.batch} | channels {args.channels} | cells "
          f"{args.layers} | torch {torch.__version__} | device {name} | threads "
          f"{torch.get_num_threads()} | peak memory of the process {peak_gib:.2f} GiB {measured}")
    print(f"  oneshot (Lightning loop, NHWC, our data): {timing(mine)}")
    print(f"  original step maths (NCHW, random tensors): {timing(theirs)}")
    print(f"  ratio oneshot / original (medians): "
          f"{statistics.median(mine) / statistics.median(theirs):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--order", choices=("first", "second"), default="first")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
