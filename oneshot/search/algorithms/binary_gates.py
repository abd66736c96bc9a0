"""ProxylessNAS's binary gates (Cai et al., 2019, Sec. 3.2): sampling and the two-path update.

All functions work on the alphas of every choice point concatenated into one flat vector;
``offsets[k]`` is where choice point ``k`` starts and ``sizes[k]`` its number of candidates.
"""

from __future__ import annotations

from typing import Sequence

import torch


def padded_probs(flat_alpha: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """``softmax(alpha)`` of each choice point as a row of a ``[points, max(sizes)]`` CPU matrix,
    zero-padded."""
    rows = torch.zeros(len(sizes), max(sizes), dtype=torch.float64)
    for k, alpha in enumerate(flat_alpha.detach().double().cpu().split(list(sizes))):
        rows[k, :len(alpha)] = torch.softmax(alpha, dim=0)
    return rows


def sample_paths(flat_alpha: torch.Tensor, sizes: Sequence[int],
                 generator: torch.Generator) -> torch.Tensor:
    """One candidate per choice point, drawn from ``softmax(alpha)``: ``[points]`` indices."""
    return torch.multinomial(padded_probs(flat_alpha, sizes), 1, generator=generator)[:, 0]


def sample_pairs(flat_alpha: torch.Tensor, sizes: Sequence[int],
                 generator: torch.Generator) -> torch.Tensor:
    """Two distinct candidates per choice point, ``[points, 2]`` as ``(active, inactive)``.

    As the reference code does: two candidates drawn from ``softmax(alpha)`` without
    replacement, then the active one drawn from the softmax of their two alphas (which is
    ``p_a / (p_a + p_b)``). Indices count within each choice point.
    """
    probs = padded_probs(flat_alpha, sizes)
    pairs = torch.multinomial(probs, 2, replacement=False, generator=generator)
    second = torch.multinomial(probs.gather(1, pairs), 1, generator=generator)[:, 0]
    return torch.where(second.bool().unsqueeze(1), pairs.flip(1), pairs)


def binary_gate_alpha_grad(flat_alpha: torch.Tensor, gate_grad: torch.Tensor,
                           pairs: torch.Tensor) -> torch.Tensor:
    """The alpha gradient of the two-path estimator (the paper's Eq. 4 on the sampled pair).

    ``pairs`` holds flat indices ``[points, 2]``. With ``q`` the softmax of the pair's two
    alphas, ``dL/dalpha_i = sum_j dL/dg_j * q_j * (delta_ij - q_i)`` for ``i, j`` in the pair;
    every other alpha gets zero.
    """
    q = torch.softmax(flat_alpha.detach()[pairs], dim=1)
    dg = gate_grad[pairs]
    pair_grad = q * dg - q * (q * dg).sum(dim=1, keepdim=True)
    grad = torch.zeros_like(flat_alpha)
    return grad.index_put_((pairs.reshape(-1),), pair_grad.reshape(-1), accumulate=True)


def rescale_pairs(new_alpha: torch.Tensor, old_alpha: torch.Tensor,
                  pairs: torch.Tensor) -> torch.Tensor:
    """Shift each updated pair so ``exp(alpha_a) + exp(alpha_b)`` keeps its old value.

    Then the probabilities of the candidates outside the pair are those before the update
    (the reference code's ``rescale_updated_arch_param``).
    """
    offset = torch.logsumexp(new_alpha[pairs], dim=1) - torch.logsumexp(old_alpha[pairs], dim=1)
    out = new_alpha.clone()
    out[pairs] = new_alpha[pairs] - offset.unsqueeze(1)
    return out
