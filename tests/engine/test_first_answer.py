"""Item 5 of issue 27: an endpoint that has never answered (always 500) ends the run after
about 15 s with the server's own message, not after --retry-s (120 s); the first retry
warning is printed under -q; a server that has answered once is ridden through as before."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest

from rex_stream.engine.retry import Outage, RetryPolicy, call_with_retry
from rex_stream.engine.scheduler import SchedulerStats
from rex_stream.errors import BackendError, TransientBackendError
from tests.servers.http_apps import AppServer, serving_http_apps

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def apps() -> Iterator[AppServer]:
    with serving_http_apps(lambda x: np.zeros((len(x), 3), np.float32)) as server:
        yield server


def test_a_never_answering_endpoint_fails_fast_under_q(apps: AppServer, tmp_path: Path) -> None:
    photo = tmp_path / "x.npy"
    np.save(photo, np.zeros((3, 8, 8), np.float32))
    started = time.monotonic()
    out = subprocess.run(
        [
            sys.executable, "-m", "rex_stream.cli", str(photo), "--backend",
            apps.url("/error500"), "--input-shape", "3,8,8", "--retry-s", "120", "-q",
        ],
        capture_output=True, text=True, timeout=110, cwd=ROOT,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert any("retrying for up to 15 s" in line for line in lines), out.stderr
    assert lines[-1].startswith("rex-stream: error:")
    assert "CUDA out of memory" in lines[-1] or "model crashed" in lines[-1], lines[-1]
    assert "has not answered once" in lines[-1]
    assert "Traceback" not in out.stderr
    assert elapsed < 100  # the 120 s budget was not spent


def test_after_a_first_answer_the_whole_budget_applies() -> None:
    """A fault after one success is retried for the whole budget, not the first-answer one."""
    policy = RetryPolicy(budget_s=30.0, base_s=0.001, cap_s=0.001, first_answer_s=0.05)
    stats = SchedulerStats()
    outage = Outage()
    calls = {"n": 0}

    async def fails_three_times() -> int:
        calls["n"] += 1
        if calls["n"] in (2, 3, 4):
            await anyio.sleep(0.03)  # three of these outlast the first-answer budget
            raise TransientBackendError("HTTP 503")
        return calls["n"]

    async def run() -> list[int]:
        first = await call_with_retry(fails_three_times, policy, stats, outage, random.Random(1))
        second = await call_with_retry(fails_three_times, policy, stats, outage, random.Random(1))
        return [first, second]

    assert anyio.run(run) == [1, 5]
    assert stats.retries == 3

    never = Outage()

    async def always_fails() -> int:
        await anyio.sleep(0.02)
        raise TransientBackendError("HTTP 500: broken")

    with pytest.raises(BackendError, match="has not answered once"):
        anyio.run(call_with_retry, always_fails, policy, SchedulerStats(), never)
