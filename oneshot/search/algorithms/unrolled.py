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
    weights = [p.detach() for name, p in model.named_parameters() if p.requires_grad]
    x_w, y_w = batch_w
    x_a, y_a = batch_a

    def loss_at(params: Sequence[torch.Tensor], arch: Mapping[str, torch.Tensor],
                x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # the module's own buffers: its BatchNorms update their running statistics as usual
        return loss_fn(functional_call(model, dict(zip(names, params)), (x, arch)), y)

    with torch.no_grad():
        fixed_arch = {label: row.detach() for label, row in arch_fn().items()}
    train_weights = [w.detach().requires_grad_() for w in weights]
    grads_w = torch.autograd.grad(loss_at(train_weights, fixed_arch, x_w, y_w), train_weights)
    with torch.no_grad():  # the virtual step, one fused operation per term over all weights
        direction = torch._foreach_add(grads_w, weights, alpha=step.weight_decay)
        moving = [(i, momentum_buffers[name]) for i, name in enumerate(names)
                  if name in momentum_buffers]
        if moving:
            torch._foreach_add_([direction[i] for i, _ in moving], [buf for _, buf in moving],
                                alpha=step.momentum)
        unrolled = [w.requires_grad_() for w in torch._foreach_add(weights, direction, alpha=-step.lr)]

    val_loss = loss_at(unrolled, arch_fn(), x_a, y_a)
    grads = torch.autograd.grad(val_loss, unrolled + list(alphas))
    v, grad_alpha = list(grads[: len(names)]), grads[len(names):]

    with torch.no_grad():
        eps = hvp_radius / torch.linalg.vector_norm(torch.stack(torch._foreach_norm(v)))
        scaled = torch._foreach_mul(v, eps)
    hvp_terms = []
    for shift in (torch._foreach_add, torch._foreach_sub):
        with torch.no_grad():
            shifted = shift(weights, scaled)
        hvp_terms.append(torch.autograd.grad(loss_at(shifted, arch_fn(), x_w, y_w), list(alphas)))
    return UnrolledGradients([ga - step.lr * (gp - gm) / (2 * eps)
                              for ga, gp, gm in zip(grad_alpha, hvp_terms[0], hvp_terms[1])],
                             val_loss.detach())
