"""User-facing errors: each is printed as one line and ends the program with a non-zero code.

``ConfigError`` needs no torch, so the option checks can run before torch is imported;
``USER_ERRORS`` (every package's user-error classes) imports their modules on first use.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration value or command-line override that cannot be used."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class DivergedProcessesError(RuntimeError):
    """The processes of a distributed search derived different genotypes."""


def _user_errors() -> tuple[type[Exception], ...]:
    """The error classes that mean bad user input, from every package that raises one."""
    from supernets.errors import GenotypeError, SpaceError
    from tasks.errors import TaskError

    return (ConfigError, TaskError, SpaceError, GenotypeError, NonFiniteLossError,
            DivergedProcessesError)


def __getattr__(name: str) -> Any:
    """``USER_ERRORS`` on first use (module ``__getattr__``, PEP 562)."""
    if name == "USER_ERRORS":
        return _user_errors()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
