"""Scheduler unit tests with a controllable fake backend (adapters get real-server tests)."""

from __future__ import annotations

import anyio
import numpy as np
import pytest

from rex_stream.config import SchedulerConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.scheduler import Scheduler
from rex_stream.errors import BackendError, first_error

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeBackend:
    """Returns row sums as one score column; can block on a gate or fail on demand."""

    def __init__(self, max_batch: int | None = None, fail_on_call: int | None = None) -> None:
        self.info = ModelInfo("fake", "x", (4,), max_batch=max_batch)
        self.batches: list[int] = []
        self.gate = anyio.Event()
        self.gate.set()
        self.fail_on_call = fail_on_call
        self.active = 0
        self.max_active = 0

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await self.gate.wait()
            self.batches.append(len(batch))
            if self.fail_on_call is not None and len(self.batches) == self.fail_on_call:
                raise RuntimeError("server exploded")
            return batch.sum(axis=1, keepdims=True)
        finally:
            self.active -= 1

    async def aclose(self) -> None:
        pass


def _fill(value: float):
    def fill(out: np.ndarray) -> None:
        out[:] = value

    return fill


async def test_rows_come_back_to_their_callers_in_order() -> None:
    backend = FakeBackend()
    async with Scheduler(backend, SchedulerConfig(max_batch=5, max_inflight=2)) as scheduler:
        results: dict[int, np.ndarray] = {}

        async def caller(k: int) -> None:
            results[k] = await scheduler.evaluate([_fill(k * 100 + i) for i in range(7)])

        async with anyio.create_task_group() as group:
            for k in range(20):
                group.start_soon(caller, k)
    for k, rows in results.items():
        assert rows[:, 0].tolist() == [4.0 * (k * 100 + i) for i in range(7)]
    assert max(backend.batches) <= 5
    assert sum(backend.batches) == 140
    assert scheduler.stats.mutants == 140


async def test_batches_never_exceed_the_models_limit() -> None:
    backend = FakeBackend(max_batch=3)
    async with Scheduler(backend, SchedulerConfig(max_batch=64)) as scheduler:
        await scheduler.evaluate([_fill(i) for i in range(50)])
    assert scheduler.max_batch == 3
    assert max(backend.batches) == 3


async def test_backpressure_bounds_queue_and_buffers() -> None:
    """Thousands of waiting mutants: the queue stays bounded, producers block, and at most
    max_inflight batches are materialised at once."""
    backend = FakeBackend()
    backend.gate = anyio.Event()  # hold every backend call until released
    config = SchedulerConfig(max_batch=8, max_inflight=2, queue_size=32, linger_ms=0)
    materialised = 0

    def counting_fill(out: np.ndarray) -> None:
        nonlocal materialised
        materialised += 1
        out[:] = 1.0

    done = 0
    async with Scheduler(backend, config) as scheduler:

        async def producer() -> None:
            nonlocal done
            await scheduler.evaluate([counting_fill] * 14)
            done += 1

        async with anyio.create_task_group() as group:
            for _ in range(300):  # 4200 mutants
                group.start_soon(producer)
            # wait until the pipeline is full: both calls blocked, queue at its bound
            with anyio.fail_after(10):
                while backend.active < 2 or scheduler._send.statistics().current_buffer_used < 32:
                    await anyio.lowlevel.checkpoint()
            stats = scheduler._send.statistics()
            assert stats.current_buffer_used == 32  # bounded queue
            assert stats.tasks_waiting_send > 0  # producers block: backpressure
            assert materialised == 16  # only the two in-flight batches were built
            backend.gate.set()
    assert done == 300
    assert backend.max_active <= 2


async def test_a_failing_call_fails_its_callers_promptly() -> None:
    backend = FakeBackend(fail_on_call=2)
    with anyio.fail_after(10):
        with pytest.raises(BaseException) as caught:  # an exception group
            async with Scheduler(backend, SchedulerConfig(max_batch=4)) as scheduler:
                async with anyio.create_task_group() as group:
                    for _ in range(10):
                        group.start_soon(scheduler.evaluate, [_fill(1)] * 6)
    error = first_error(caught.value)
    assert isinstance(error, BackendError)
    assert "server exploded" in str(error)


async def test_cancellation_cleans_up() -> None:
    backend = FakeBackend()
    backend.gate = anyio.Event()  # never released
    with anyio.move_on_after(0.5) as scope:
        async with Scheduler(backend, SchedulerConfig(max_batch=4)) as scheduler:
            await scheduler.evaluate([_fill(1)] * 10)
    assert scope.cancelled_caught
    assert backend.active == 0


def test_memory_budget_shrinks_batches_and_calls_for_huge_inputs() -> None:
    from rex_stream.engine.scheduler import budget_inflight

    volume = 512 * 2**20  # a 512³ float32 volume
    assert budget_inflight(2, volume) == 1
    assert budget_inflight(8, 600_000) == 8  # an ImageNet image is not affected
    backend = FakeBackend()
    backend.info = ModelInfo("big", "x", (512, 512, 512))
    scheduler = Scheduler(backend, SchedulerConfig(max_batch=16, max_inflight=2))
    assert (scheduler.max_batch, scheduler.max_inflight) == (1, 1)
