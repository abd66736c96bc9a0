"""User-facing errors: each is printed as one line and ends the program with a non-zero code."""

from __future__ import annotations

from oneshot.guards import NonFiniteLossError
from supernets.errors import GenotypeError, SpaceError
from tasks.errors import TaskError


class ConfigError(ValueError):
    """A configuration value or command-line override that cannot be used."""


USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError, TaskError, SpaceError, GenotypeError, NonFiniteLossError)
