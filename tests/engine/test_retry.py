"""The retry policy: backoff bounds, Retry-After, budgets, exception groups, abandoned calls."""

from __future__ import annotations

import random
import sys
import time

import anyio
import pytest

from rex_stream.adapters.http.replies import retry_after_s
from rex_stream.engine.retry import Outage, RetryPolicy, call_with_retry, transient
from rex_stream.engine.scheduler import SchedulerStats
from rex_stream.errors import BackendError, TransientBackendError

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup


def test_backoff_is_full_jitter_below_the_cap() -> None:
    policy = RetryPolicy(budget_s=10, base_s=0.1, cap_s=1.0)
    rng = random.Random(0)
    for attempt in range(12):
        waits = [policy.backoff(attempt, rng) for _ in range(50)]
        assert all(0 <= w <= min(1.0, 0.1 * 2**attempt) for w in waits)
    assert max(policy.backoff(10, rng) for _ in range(200)) > 0.5  # it reaches the cap


def test_transient_looks_into_exception_groups() -> None:
    fault = TransientBackendError("503")
    assert transient(ExceptionGroup("g", [fault, TransientBackendError("reset")])) is fault
    assert transient(ExceptionGroup("g", [fault, BackendError("400")])) is None
    assert transient(BackendError("400")) is None


def test_retry_after_header_forms() -> None:
    assert retry_after_s("3") == 3.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past
    assert retry_after_s("soon") is None and retry_after_s(None) is None


def test_retries_honour_retry_after_and_count() -> None:
    stats = SchedulerStats()
    failures = [TransientBackendError("busy", retry_after=0.3), TransientBackendError("reset")]

    async def call() -> str:
        if failures:
            raise failures.pop(0)
        return "scores"

    started = time.perf_counter()
    assert anyio.run(call_with_retry, call, RetryPolicy(budget_s=5, base_s=0.01), stats) == "scores"
    assert time.perf_counter() - started >= 0.3
    assert stats.retries == 2 and stats.retrying == 0 and stats.retry_wait_s >= 0.3


def test_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    async def call() -> str:
        raise TransientBackendError("503 busy", retry_after=30)

    started = time.perf_counter()
    with pytest.raises(BackendError, match=r"503 busy.*asked to wait 30 s.*--retry-s"):
        anyio.run(call_with_retry, call, RetryPolicy(budget_s=2), SchedulerStats())
    assert time.perf_counter() - started < 1


def test_a_server_found_gone_abandons_the_calls_in_flight() -> None:
    """One call finds the server gone: the other, waiting on a reply, is retried at once."""
    stats, outage, policy = SchedulerStats(), Outage(), RetryPolicy(budget_s=5, base_s=0.01)
    tries = {"slow": 0, "gone": 0}

    async def slow() -> str:
        tries["slow"] += 1
        if tries["slow"] == 1:
            await anyio.sleep(30)  # a reply that would come only at the deadline
        return "slow"

    async def gone() -> str:
        tries["gone"] += 1
        if tries["gone"] == 1:
            await anyio.sleep(0.1)
            raise TransientBackendError("connection refused", unreachable=True)
        return "gone"

    results: dict[str, str] = {}

    async def run() -> None:
        async def one(name: str, call: object) -> None:
            results[name] = await call_with_retry(call, policy, stats, outage)  # type: ignore[arg-type]

        async with anyio.create_task_group() as group:
            group.start_soon(one, "slow", slow)
            group.start_soon(one, "gone", gone)

    started = time.perf_counter()
    anyio.run(run)
    assert results == {"slow": "slow", "gone": "gone"}
    assert time.perf_counter() - started < 5 and stats.retries == 2
