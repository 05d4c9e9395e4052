"""The in-flight window: more calls while round trips dominate, never beyond the budget."""

from __future__ import annotations

import anyio
import numpy as np
import pytest

from rex_stream.config import SchedulerConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.inflight import GROWTH_STEP, InflightWindow
from rex_stream.engine.scheduler import Scheduler


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_window_grows_while_round_trips_stay_flat_and_work_waits() -> None:
    window = InflightWindow(2, 10)
    for _ in range(20):
        window.observe(0.020, backlog=True)
    assert window.size == 10  # capped at the ceiling


def test_window_does_not_grow_without_backlog() -> None:
    window = InflightWindow(2, 10)
    for _ in range(20):
        window.observe(0.020, backlog=False)
    assert window.size == 2


def test_window_shrinks_to_its_floor_when_round_trips_grow() -> None:
    window = InflightWindow(2, 10)
    for _ in range(20):
        window.observe(0.020, backlog=True)
    for _ in range(40):
        window.observe(0.200, backlog=True)  # the backend, not the network, is the limit
    assert window.size == 2


def test_window_reaches_four_times_its_size_while_it_grows() -> None:
    window = InflightWindow(4, 64)
    assert window.reach == 16  # before any answer: optimistic
    window.observe(0.020, backlog=True)
    assert (window.size, window.reach) == (7, 28)  # a latency-bound answer: three calls more
    window.observe(0.020, backlog=True)
    window.observe(0.020, backlog=True)
    assert (window.size, window.reach) == (13, 52)
    window.observe(0.020, backlog=True)
    assert window.reach == 64  # never past the ceiling
    window.observe(0.050, backlog=True)  # slowed by the calls it overlaps: not growing
    assert window.reach == window.size == 16


def test_window_at_most_quadruples_per_round_trip() -> None:
    window = InflightWindow(4, 64)
    for _ in range(4):  # the four calls of one round trip, all latency-bound, work waiting
        window.observe(0.020, backlog=True)
    assert window.size == 16


def test_a_one_row_call_does_not_set_the_pace_of_full_batches() -> None:
    window = InflightWindow(2, 30)
    window.observe(0.004, backlog=False, full=False)  # the target's row: few bytes
    for _ in range(8):
        window.observe(0.020, backlog=True)  # full batches: 5 times longer, all the same
    assert window.size == 26
    assert window.fastest_s == 0.020


def test_fixed_window_reaches_its_size_only() -> None:
    window = InflightWindow(3, 3)
    window.observe(0.020, backlog=True)
    assert (window.size, window.reach) == (3, 3)


def test_window_halves_at_most_per_round_trip_of_slow_calls() -> None:
    window = InflightWindow(2, 64)
    for _ in range(21):
        window.observe(0.020, backlog=True)
    assert window.size == 64
    for _ in range(64):  # one round trip's worth of slow calls
        window.observe(0.100, backlog=True)
    assert window.size == 32
    assert not window.growing


def test_refusal_stops_the_reach_at_the_server_cap() -> None:
    window = InflightWindow(2, 64)
    for _ in range(4):
        window.observe(0.020, backlog=True)
    window.overloaded(at_server=6)
    assert window.size == 5
    assert window.reach == 5  # the cap is the top: no room to grow into


class LatencyBackend:
    """Every call takes the same round trip however many overlap (a fast server far away)."""

    def __init__(self, latency_s: float) -> None:
        self.info = ModelInfo("far", "x", (4,))
        self.latency_s = latency_s
        self.active = 0
        self.max_active = 0

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await anyio.sleep(self.latency_s)
            return batch.sum(axis=1, keepdims=True)
        finally:
            self.active -= 1

    async def aclose(self) -> None:
        pass


def _fill(value: float):
    def fill(out: np.ndarray) -> None:
        out[:] = value

    return fill


@pytest.mark.anyio
@pytest.mark.parametrize("adaptive", [True, False])
async def test_scheduler_adds_calls_behind_latency_only_when_adaptive(adaptive: bool) -> None:
    backend = LatencyBackend(0.01)
    config = SchedulerConfig(max_batch=4, max_inflight=2, adaptive_inflight=adaptive)
    async with Scheduler(backend, config) as scheduler:
        scores = await scheduler.evaluate([_fill(float(i)) for i in range(400)])
    assert np.array_equal(scores[:, 0], 4.0 * np.arange(400))
    if adaptive:
        assert backend.max_active > 2
    else:
        assert backend.max_active == 2
    assert backend.max_active <= scheduler.window.ceiling


def test_window_ceiling_keeps_buffers_in_the_budget() -> None:
    backend = LatencyBackend(0.01)
    backend.info = ModelInfo("big", "x", (64, 512, 512))  # 64 MiB per input
    scheduler = Scheduler(backend, SchedulerConfig(max_batch=2, max_inflight=1))
    assert scheduler.window.ceiling * scheduler.max_batch * 64 * 2**20 <= 2**29


def test_a_cautious_window_grows_a_call_at_a_time_and_reaches_no_further() -> None:
    """A backend computing on this machine's cores (no gate of its own): more calls only queue
    at the same cores, so the window grows by one and the work it paces never runs ahead."""
    eager, cautious = InflightWindow(2, 64), InflightWindow(2, 64, cautious=True)
    for window in (eager, cautious):
        window.observe(0.05, backlog=True)
        window.observe(0.09, backlog=True)  # within 2x (eager) but not 1.5x (cautious)
    assert eager.size == 2 + 2 * GROWTH_STEP and eager.reach > eager.size
    assert cautious.size == 3 and cautious.reach == cautious.size
