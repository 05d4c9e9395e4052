"""Block fills: one vectorised write per request, split across batches and mixed with others."""

from __future__ import annotations

import anyio
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rex_stream.config import SchedulerConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.scheduler import CountingEvaluator, Scheduler
from rex_stream.errors import BackendError, first_error


class RecordingBackend:
    """Scores a row as (its sum, its first element); remembers each batch's rows."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.info = ModelInfo("blocks", "x", (3,))
        self.batches: list[np.ndarray] = []
        self.gate = anyio.Event()
        self.gate.set()
        self.fail_on_call = fail_on_call

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        await self.gate.wait()
        self.batches.append(batch.copy())
        if self.fail_on_call is not None and len(self.batches) == self.fail_on_call:
            raise RuntimeError("server exploded")
        return np.stack([batch.sum(axis=1), batch[:, 0]], axis=1)

    async def aclose(self) -> None:
        pass


def block_rows(block: int, start: int, stop: int) -> np.ndarray:
    """Rows ``start … stop − 1`` of block ``block``: distinct for every (block, row)."""
    index = np.arange(start, stop, dtype=np.float64)
    return np.stack([np.full_like(index, block), index, index * index], axis=1)


class BlockWriter:
    """Writes a block's rows vectorised, counting the calls and the rows written."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.calls = 0
        self.rows_written: list[int] = []

    def __call__(self, out: np.ndarray, start: int, stop: int) -> None:
        assert out.shape[0] == stop - start
        self.calls += 1
        self.rows_written.extend(range(start, stop))
        out[:] = block_rows(self.block, start, stop)


def expected(block: int, count: int) -> np.ndarray:
    rows = block_rows(block, 0, count)
    return np.stack([rows.sum(axis=1), rows[:, 0]], axis=1)


async def run_blocks(
    sizes: list[int], max_batch: int, max_inflight: int, linger_ms: float = 1.0
) -> tuple[list[np.ndarray], RecordingBackend, list[BlockWriter]]:
    backend = RecordingBackend()
    writers = [BlockWriter(b) for b in range(len(sizes))]
    config = SchedulerConfig(max_batch=max_batch, max_inflight=max_inflight, linger_ms=linger_ms)
    results: list[np.ndarray] = [np.empty(0)] * len(sizes)
    async with Scheduler(backend, config) as scheduler:

        async def one(b: int) -> None:
            if b % 3 == 2:  # some requests as per-row fills, mixed with the blocks
                fills = [
                    lambda out, i=i: np.copyto(out, block_rows(b, i, i + 1)[0])
                    for i in range(sizes[b])
                ]
                writers[b].rows_written.extend(range(sizes[b]))
                results[b] = await scheduler.evaluate(fills)
            else:
                results[b] = await scheduler.evaluate_block(writers[b], sizes[b])

        async with anyio.create_task_group() as group:
            for b in range(len(sizes)):
                group.start_soon(one, b)
    return results, backend, writers


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 60), min_size=1, max_size=8),
    max_batch=st.integers(1, 40),
    max_inflight=st.integers(1, 4),
)
def test_block_results_do_not_depend_on_batching(
    sizes: list[int], max_batch: int, max_inflight: int
) -> None:
    """Whatever the batch size and calls in flight: every row scored once, in order."""
    results, backend, writers = anyio.run(run_blocks, sizes, max_batch, max_inflight)
    for b, size in enumerate(sizes):
        np.testing.assert_array_equal(results[b], expected(b, size))
        assert sorted(writers[b].rows_written) == list(range(size))  # each row written once
    assert all(len(batch) <= max_batch for batch in backend.batches)
    assert sum(len(batch) for batch in backend.batches) == sum(sizes)


def test_a_block_is_split_across_batches_and_batches_mix_blocks() -> None:
    results, backend, writers = anyio.run(run_blocks, [50, 50, 7, 30], 16, 1, 20.0)
    for b, size in enumerate([50, 50, 7, 30]):
        np.testing.assert_array_equal(results[b], expected(b, size))
    assert writers[0].calls >= 4  # 50 rows through batches of ≤ 16
    assert writers[0].calls <= 5  # but one write per batch, never one per row
    blocks_per_batch = [len(np.unique(batch[:, 0])) for batch in backend.batches]
    assert max(blocks_per_batch) >= 2  # a batch holds rows of several requests
    assert max(len(batch) for batch in backend.batches) == 16


@pytest.mark.anyio
async def test_counting_evaluator_counts_block_rows() -> None:
    async with Scheduler(RecordingBackend(), SchedulerConfig(max_batch=8)) as scheduler:
        counting = CountingEvaluator(scheduler)
        scores = await counting.evaluate_block(BlockWriter(4), 21)
    assert counting.queries == 21
    assert counting.rounds == 1
    np.testing.assert_array_equal(scores, expected(4, 21))


@pytest.mark.anyio
async def test_a_failing_call_fails_the_block_and_its_rest_is_never_written() -> None:
    backend = RecordingBackend(fail_on_call=1)
    writer = BlockWriter(0)
    config = SchedulerConfig(max_batch=4, max_inflight=1, linger_ms=0)
    with anyio.fail_after(10):
        with pytest.raises(BaseException) as caught:
            async with Scheduler(backend, config) as scheduler:
                await scheduler.evaluate_block(writer, 400)
    error = first_error(caught.value)
    assert isinstance(error, BackendError)
    assert "server exploded" in str(error)
    assert len(writer.rows_written) <= 12  # the failed batch and at most two already built


@pytest.mark.anyio
async def test_a_cancelled_block_stops_being_written_and_the_scheduler_goes_on() -> None:
    backend = RecordingBackend()
    backend.gate = anyio.Event()  # hold the calls until the caller is gone
    writer = BlockWriter(0)
    config = SchedulerConfig(max_batch=4, max_inflight=1, linger_ms=0)
    async with Scheduler(backend, config) as scheduler:
        with anyio.move_on_after(0.2) as scope:
            await scheduler.evaluate_block(writer, 1000)
        assert scope.cancelled_caught
        written = len(writer.rows_written)
        assert written <= 8  # one batch in the call, one gathered for the next
        backend.gate.set()
        other = await scheduler.evaluate_block(BlockWriter(1), 10)
    np.testing.assert_array_equal(other, expected(1, 10))
    assert len(writer.rows_written) <= written + 4
    assert scheduler.stats.mutants <= 8 + 4 + 10


@pytest.mark.anyio
async def test_empty_block_scores_nothing() -> None:
    async with Scheduler(RecordingBackend(), SchedulerConfig(max_batch=4)) as scheduler:
        scores = await scheduler.evaluate_block(BlockWriter(0), 0)
    assert scores.shape[0] == 0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
