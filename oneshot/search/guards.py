"""Stop a search whose loss turned NaN or infinite, naming the step and the loss."""

from __future__ import annotations

from typing import Mapping

import torch

from oneshot.errors import NonFiniteLossError


class NonFiniteLossGuard:
    """Records the first non-finite loss on its device and raises when checked.

    Recording needs no host synchronisation; :meth:`due` says when to read the record back (every
    step on CPU, where reading is free, every ``check_every`` steps on an accelerator).
    """

    def __init__(self, check_every: int = 50) -> None:
        self.check_every = check_every
        self._first_bad: dict[str, torch.Tensor] = {}

    def observe(self, losses: Mapping[str, torch.Tensor], *, epoch: int, batch: int) -> None:
        """Remember ``(epoch, batch, value)`` of the first non-finite value of each named loss."""
        for name, loss in losses.items():
            loss = loss.detach().float()
            here = torch.stack([torch.tensor(float(epoch)), torch.tensor(float(batch))]).to(loss.device)
            current = torch.cat([here, loss.reshape(1)])
            record = self._first_bad.get(name)
            if record is None:
                record = torch.full((3,), -1.0, device=loss.device)
            fresh = (~torch.isfinite(loss)) & (record[0] < 0)
            self._first_bad[name] = torch.where(fresh, current, record)

    def due(self, device: torch.device, batch: int) -> bool:
        """Whether reading the record now is worth a host synchronisation."""
        return device.type == "cpu" or batch % self.check_every == 0

    def check(self) -> None:
        """Raise :class:`NonFiniteLossError` if any observed loss was non-finite."""
        for name, record in self._first_bad.items():
            epoch, batch, value = record.tolist()
            if epoch >= 0:
                raise NonFiniteLossError(
                    f"the {name} loss became {value} at epoch {int(epoch)}, batch {int(batch)}: lower the "
                    "learning rate or check the data")
