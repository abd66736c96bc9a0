"""Second-order DARTS: the unrolled architecture gradient, computed functionally.

For one virtual SGD step ``w' = w - lr * (momentum * m + grad_w L_train(w, a) + wd * w)`` the
architecture gradient is ``grad_a L_val(w', a) - lr * H v`` where ``v = grad_w' L_val(w', a)`` and
the Hessian-vector product ``H v = grad^2_{a,w} L_train(w, a) v`` is approximated by central finite
differences, ``(grad_a L_train(w + eps v, a) - grad_a L_train(w - eps v, a)) / (2 eps)`` with
``eps = 0.01 / ||v||`` (Liu et al., 2019, Eq. 7-8). The model is never copied: every forward is a
``torch.func.functional_call`` with a dictionary of weight tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple, Sequence

import torch
from torch import nn
from torch.func import functional_call

ArchFn = Callable[[], Mapping[str, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class VirtualStep:
    """The weight optimizer's settings that define the virtual step ``w -> w'``."""

    lr: float
    momentum: float
    weight_decay: float


class UnrolledGradients(NamedTuple):
    """The alpha gradients of one second-order step and the loss they differentiate."""

    alphas: list[torch.Tensor]
    loss: torch.Tensor  # L_val(w', a), detached


def unrolled_arch_gradients(
    model: nn.Module,
    arch_fn: ArchFn,
    alphas: Sequence[torch.Tensor],
    batch_w: tuple[torch.Tensor, torch.Tensor],
    batch_a: tuple[torch.Tensor, torch.Tensor],
    loss_fn: LossFn,
    step: VirtualStep,
    momentum_buffers: Mapping[str, torch.Tensor],
    *,
    hvp_radius: float = 1e-2,
) -> UnrolledGradients:
    """Gradients of the unrolled validation loss with respect to ``alphas``, and that loss.

    ``arch_fn`` maps the alphas to the architecture passed to ``model(x, arch)``; it is called with
    gradient tracking so the returned gradients flow to ``alphas``. ``momentum_buffers`` maps weight
    names to the optimizer's momentum buffers (missing names count as zero).
    """
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    weights = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    x_w, y_w = batch_w
    x_a, y_a = batch_a

    def loss_at(params: Mapping[str, torch.Tensor], arch: Mapping[str, torch.Tensor],
                x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, {**params, **buffers}, (x, arch)), y)

    with torch.no_grad():
        fixed_arch = {label: row.detach() for label, row in arch_fn().items()}
    train_weights = {name: w.detach().requires_grad_() for name, w in weights.items()}
    grads_w = torch.autograd.grad(loss_at(train_weights, fixed_arch, x_w, y_w),
                                  [train_weights[n] for n in names])
    with torch.no_grad():
        unrolled = {}
        for name, g in zip(names, grads_w):
            w = weights[name]
            direction = g + step.weight_decay * w
            buf = momentum_buffers.get(name)
            if buf is not None:
                direction = direction + step.momentum * buf
            unrolled[name] = (w - step.lr * direction).requires_grad_()

    val_loss = loss_at(unrolled, arch_fn(), x_a, y_a)
    grads = torch.autograd.grad(val_loss, [unrolled[n] for n in names] + list(alphas))
    v, grad_alpha = grads[: len(names)], grads[len(names):]

    with torch.no_grad():
        eps = hvp_radius / torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in v]))
    hvp_terms = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            shifted = {name: weights[name] + sign * eps * dv for name, dv in zip(names, v)}
        hvp_terms.append(torch.autograd.grad(loss_at(shifted, arch_fn(), x_w, y_w), list(alphas)))
    return UnrolledGradients([ga - step.lr * (gp - gm) / (2 * eps)
                              for ga, gp, gm in zip(grad_alpha, hvp_terms[0], hvp_terms[1])],
                             val_loss.detach())
