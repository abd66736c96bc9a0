"""DARTS- (Chu et al., ICLR 2021): the weight of the auxiliary skip, decayed over the search.

``algorithm.auxiliary_skip=true`` gives every operation choice of the supernet an extra
``beta * skip(x)`` (:mod:`supernets.auxiliary`); ``beta`` starts at 1 and decays linearly to 0 at
the end of the search, per epoch, as the DARTS- reference code schedules it
(``beta = 1 - epoch / epochs``: 1 in the first epoch, ``1 / epochs`` in the last, 0 after it).
The auxiliary skip carries the residual path that otherwise lets the ``skip_connect``
candidates win unfairly; it is not part of the derived network (the space's usual genotype).
"""

from __future__ import annotations

import pytorch_lightning as pl

from supernets.auxiliary import set_auxiliary_skip_weight


def auxiliary_skip_weight(epoch: int, epochs: int) -> float:
    """``beta`` of ``epoch`` (0-based) of a search of ``epochs``: ``1 - epoch / epochs``,
    1 at the first epoch and 0 at ``epoch == epochs`` (never below 0)."""
    return max(0.0, 1.0 - epoch / epochs)


def update_auxiliary_skip(module: pl.LightningModule) -> float:
    """Set the auxiliary skips of ``module.supernet`` to this epoch's ``beta``, log it as
    ``train/skip_beta`` and return it (call at the start of every training epoch)."""
    beta = auxiliary_skip_weight(module.current_epoch, max(1, module.trainer.max_epochs or 1))
    set_auxiliary_skip_weight(module.supernet, beta)
    module.log("train/skip_beta", beta, on_step=False, on_epoch=True)
    return beta
