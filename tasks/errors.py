"""Errors raised by the tasks package."""


class TaskError(ValueError):
    """A task could not be loaded or configured as requested."""


def one_line(err: BaseException) -> str:
    """First line of an exception's message (or its type name), for one-line error reports."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
