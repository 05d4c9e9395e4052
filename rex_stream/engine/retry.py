"""Riding through transient backend faults: retries with exponential backoff and full jitter.

Adapters say which failures may pass by raising :class:`~rex_stream.errors.TransientBackendError`
(HTTP 5xx and 429, refused or reset connections, gRPC UNAVAILABLE and RESOURCE_EXHAUSTED); the
scheduler wraps every inference call in :func:`call_with_retry`. Inference is idempotent (the
same batch gives the same scores), so a retried call changes nothing but the wall time.

Each call has its own budget of ``budget_s`` seconds, counted from its first failure: a server
that comes back within the budget is ridden through, one that does not ends the run with the
last error and how long it was retried. Until the backend has answered once, the budget is at
most ``first_answer_s`` (15 s): an endpoint that has never worked is more likely a wrong URL or
a broken model than a restart, and its user should not wait two minutes to hear so.
Waits grow as ``uniform(0, min(cap, base · 2^attempt))`` ("full jitter", so that many
waiting calls do not return in lockstep) and are never shorter than the server's ``Retry-After``.

When a call finds the server gone (:attr:`~rex_stream.errors.TransientBackendError.unreachable`:
refused or dropped connections, "server is stopping"), the calls still in flight on it are
abandoned and retried rather than left to wait out their deadline: a server that
shuts down gracefully may hold them unanswered until it exits.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import anyio

from rex_stream.errors import BackendError, ConfigError, TransientBackendError

logger = logging.getLogger(__name__)

T = TypeVar("T")

_JITTER = random.Random()  # waits only: never touches results

#: The default retry budget (seconds per failing call): enough for a server restart.
DEFAULT_RETRY_S = 120.0

#: The retry budget before the backend's first successful answer.
FIRST_ANSWER_S = 15.0


class RetryCounters(Protocol):
    """Where retries are counted (the scheduler's stats)."""

    retries: int
    retrying: int
    retry_wait_s: float


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to retry a transient failure (``budget_s`` 0: never)."""

    budget_s: float = DEFAULT_RETRY_S
    base_s: float = 0.2
    cap_s: float = 10.0
    first_answer_s: float = FIRST_ANSWER_S

    def __post_init__(self) -> None:
        if not self.budget_s >= 0:  # also catches NaN
            raise ConfigError(f"retry_s = {self.budget_s!r} must be >= 0 (0: no retries)")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The wait before retry number ``attempt`` (0-based): full jitter."""
        return rng.uniform(0.0, min(self.cap_s, self.base_s * 2.0**attempt))


class Outage:
    """Calls in flight on one backend; :meth:`server_gone` abandons them for a retry."""

    def __init__(self) -> None:
        self._scopes: set[anyio.CancelScope] = set()
        #: whether the backend has answered a call successfully yet
        self.answered = False

    def server_gone(self, reporter: anyio.CancelScope | None = None) -> None:
        """Cancel every call in flight but the reporter's (each then retries)."""
        for scope in list(self._scopes):
            if scope is not reporter:
                scope.cancel()

    async def attempt(self, call: Callable[[], Awaitable[T]]) -> T:
        """Await one try of ``call``; if the server is found gone meanwhile, raise a transient
        error instead of waiting for an answer that will not come."""
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                result = await call()
                self.answered = True
                return result
            except Exception as exc:
                fault = transient(exc)
                if fault is not None and fault.unreachable:
                    self.server_gone(scope)
                raise
            finally:
                self._scopes.discard(scope)
        raise TransientBackendError(
            "abandoned a call in flight: the server went away meanwhile", unreachable=True
        )


def transient(error: BaseException) -> TransientBackendError | None:
    """The transient error behind ``error`` (also inside an exception group whose every leaf
    is transient), or None when the failure should end the run."""
    if isinstance(error, TransientBackendError):
        return error
    inner = getattr(error, "exceptions", None)
    if not inner:
        return None
    leaves = [transient(child) for child in inner]
    if all(leaf is not None for leaf in leaves):
        return leaves[0]
    return None


async def call_with_retry(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    counters: RetryCounters,
    outage: Outage | None = None,
    rng: random.Random | None = None,
) -> T:
    """Await ``call()``, retrying transient failures within the policy's budget (calls that
    share an ``outage`` are abandoned together when one finds the server gone)."""
    if policy.budget_s <= 0:
        return await call()
    rng = rng or _JITTER
    outage = outage or Outage()
    attempt = 0
    first_failure: float | None = None
    try:
        while True:
            budget = policy.budget_s
            if not outage.answered:
                budget = min(budget, policy.first_answer_s)
            try:
                result = await outage.attempt(call)
            except Exception as exc:
                fault = transient(exc)
                if fault is None:
                    raise
                now = time.monotonic()
                if first_failure is None:
                    first_failure = now
                    counters.retrying += 1
                    if counters.retrying == 1:
                        logger.warning("backend fault, retrying for up to %g s: %s", budget, fault)
                elapsed = now - first_failure
                wait = max(policy.backoff(attempt, rng), fault.retry_after or 0.0)
                if elapsed + wait > budget:
                    raise _gave_up(fault, attempt + 1, elapsed, budget, outage.answered) from exc
                counters.retries += 1
                counters.retry_wait_s += wait
                logger.debug("retry %d in %.2f s after: %s", attempt + 1, wait, fault)
                await anyio.sleep(wait)
                attempt += 1
                continue
            if first_failure is not None:
                logger.info(
                    "backend call succeeded after %d retries in %.1f s",
                    attempt,
                    time.monotonic() - first_failure,
                )
            return result
    finally:
        if first_failure is not None:
            counters.retrying -= 1


def _gave_up(
    fault: TransientBackendError, attempts: int, elapsed: float, budget: float, answered: bool
) -> BackendError:
    """The error that ends a run once the retry budget is spent."""
    advice = (
        f"; the server asked to wait {fault.retry_after:g} s"
        if fault.retry_after and fault.retry_after > budget - elapsed
        else ""
    )
    budget_note = (
        f"--retry-s sets the retry budget, now {budget:g} s"
        if answered
        else f"the backend has not answered once, so faults are retried for {budget:g} s at "
        "most; once it has, for --retry-s"
    )
    return BackendError(
        f"{fault} (still failing after {attempts} attempts over {elapsed:.1f} s{advice}; "
        f"{budget_note})"
    )
