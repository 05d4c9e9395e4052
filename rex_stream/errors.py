"""The exception hierarchy: every error rex-stream raises on purpose derives from RexStreamError."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup


class RexStreamError(Exception):
    """Base class of every error rex-stream raises deliberately; the CLI prints it as one line."""

    exit_code: int = 1


class ConfigError(RexStreamError):
    """A configuration value (CLI flag, TOML key or API argument) is missing or invalid.

    ``key`` names the offending setting where one is known: a settings field
    (``causal.iters``), a TOML key (``causal.iters``, ``rex.onnx.means``) or a flag
    (``--iters``). ``detail`` is what is wrong with its value, without the key's name
    (``0 must be > 0``), so that a caller can report it under another name.
    """

    exit_code = 2

    def __init__(self, message: str, *, key: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.detail = detail


class InputError(RexStreamError):
    """An input file or array cannot be read, or does not fit the model."""

    exit_code = 3


class BackendError(RexStreamError):
    """The model backend failed: unreachable, misconfigured, or returned something unusable."""

    exit_code = 4


class BackendTimeout(BackendError):
    """A backend call did not answer within its deadline."""


class TransientBackendError(BackendError):
    """A backend call failed in a way that may pass (5xx, 429, a reset or refused connection,
    gRPC UNAVAILABLE); the scheduler retries it within its retry budget.

    ``retry_after`` is the server's own advice in seconds (``Retry-After``), if it gave any;
    ``unreachable`` says the server itself is gone or going (refused or dropped connections,
    "server is stopping"), so calls still waiting on it will not be answered either;
    ``overloaded`` says the server refused the call for load (HTTP 429, RESOURCE_EXHAUSTED, a
    full queue), so fewer calls should go in flight.
    """

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        *,
        unreachable: bool = False,
        overloaded: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.unreachable = unreachable
        self.overloaded = overloaded


class StoreError(RexStreamError):
    """The Zarr store cannot be written, read, or resumed."""

    exit_code = 5


class StoreLocked(StoreError):
    """Another writer holds the lock on a store group."""


class OutputError(RexStreamError):
    """An output file (PNG, JSON) cannot be written."""

    exit_code = 6


def first_error(group: BaseException) -> BaseException:
    """The most telling leaf of an exception group (a RexStreamError if there is one)."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        inner = getattr(error, "exceptions", None)
        if inner is None:
            leaves.append(error)
        else:
            for child in inner:
                walk(child)

    walk(group)
    for leaf in leaves:
        if isinstance(leaf, RexStreamError):
            return leaf
    for leaf in leaves:
        if isinstance(leaf, Exception):
            return leaf
    return group


@contextmanager
def raise_first_error() -> Iterator[None]:
    """Re-raise the telling error of an exception group from the task groups inside."""
    try:
        yield
    except BaseExceptionGroup as group:
        error = first_error(group)
        if error is group:
            raise
        raise error from None
