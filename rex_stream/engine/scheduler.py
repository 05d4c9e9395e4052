"""The coalescing scheduler: many waiting searches, few large backend calls, bounded memory.

Callers submit mutants as *fill functions* (which write one input row into a buffer) or as a
*block* (one vectorised callable that writes any range of a block's rows at once, so thousands
of near-identical rows cost no Python time per row) and await their score rows. A dispatcher
coalesces queued mutants into batches of up to ``max_batch`` (a block may be split across
batches, and a batch may hold rows of many blocks), lingers briefly for a batch to fill, and
runs ``max_inflight`` backend calls at once, more while round trips rather than the backend
limit the run (:mod:`.inflight`). Each call owns a batch buffer, and all buffers together stay
within ``BUFFER_BUDGET_BYTES`` however many mutants wait: rows are written only into a batch
buffer. The queue of waiting requests (fill lists and blocks) is bounded too (producers block
when it is full: backpressure). Calls that fail transiently are retried within ``config.retry_s``
(see :mod:`rex_stream.engine.retry`).
"""

from __future__ import annotations

import contextvars
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Protocol

import anyio
import anyio.abc
import numpy as np
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from rex_stream.config import SchedulerConfig
from rex_stream.engine.backend import Backend, default_inflight
from rex_stream.engine.inflight import ADAPTIVE_CEILING, FollowsInflight, InflightWindow
from rex_stream.engine.memory import CHECK_FROM_ROWS, budget_bytes, fit_batch
from rex_stream.engine.requests import (
    Batch,
    BlockWrite,
    Fill,
    Segment,
    Ticket,
    fill_all,
    write_fills,
)
from rex_stream.engine.retry import Outage, RetryPolicy, call_with_retry, transient
from rex_stream.errors import BackendError, RexStreamError

logger = logging.getLogger(__name__)

#: Batch size when neither the user nor the backend names one: large enough for a GPU server,
#: small enough not to slow a CPU one (EfficientNet-Lite0 on 2 cores: 175/s at 32, 137/s at 64).
DEFAULT_MAX_BATCH = 32

#: Bytes all batch buffers together may take before ``max_batch`` shrinks (never below 1).
BUFFER_BUDGET_BYTES = 1 << 29


def budget_inflight(wanted: int, input_bytes: int) -> int:
    """The most calls in flight ≤ ``wanted`` whose one-input buffers fit the memory budget
    (at least one): a 512³ float32 volume (512 MiB) gets one call at a time."""
    return max(1, min(wanted, BUFFER_BUDGET_BYTES // max(1, input_bytes)))


def budget_batch(wanted: int, input_bytes: int, max_inflight: int) -> int:
    """The largest batch ≤ ``wanted`` whose ``max_inflight`` buffers fit the memory budget.

    Small inputs are unaffected (an ImageNet image is 0.6 MB, so 32 × 8 buffers take 154 MB);
    a 512³ float32 volume (512 MiB) gets batches of 1.
    """
    fitting = BUFFER_BUDGET_BYTES // max(1, input_bytes * max_inflight)
    return max(1, min(wanted, fitting))


class Evaluator(Protocol):
    """What searches and extraction need from a scheduler: score fills, know the batch size."""

    max_batch: int

    async def evaluate(self, fills: Sequence[Fill]) -> np.ndarray:
        """One score row per fill, in order."""
        ...

    async def evaluate_block(self, write: BlockWrite, count: int) -> np.ndarray:
        """One score row per row of a block of ``count`` rows that ``write`` writes, in order."""
        ...


#: Sequential ``evaluate`` rounds behind the current task (tasks inherit it when started).
_rounds_behind: contextvars.ContextVar[int] = contextvars.ContextVar("rounds_behind", default=0)


def rounds_behind() -> int:
    """Dependent ``evaluate`` rounds (through a :class:`CountingEvaluator`) behind this task."""
    return _rounds_behind.get()


def continue_after(rounds: int) -> None:
    """Mark this task as waiting for a result that came ``rounds`` rounds deep (another task's)."""
    _rounds_behind.set(max(_rounds_behind.get(), rounds))


class CountingEvaluator:
    """A view of a shared scheduler that counts the mutants one input sends through it, and
    the rounds on its longest chain of dependent ``evaluate`` calls (its critical path)."""

    def __init__(self, scheduler: Evaluator) -> None:
        self._scheduler = scheduler
        self.queries = 0
        self.rounds = 0
        _rounds_behind.set(0)  # this input's chain starts here, whatever the task ran before

    @property
    def max_batch(self) -> int:
        """The shared scheduler's batch size (its memory calibration may lower it)."""
        return self._scheduler.max_batch

    async def evaluate(self, fills: Sequence[Fill]) -> np.ndarray:
        """Count, then score through the shared scheduler."""
        self.queries += len(fills)
        depth = _rounds_behind.get() + 1
        scores = await self._scheduler.evaluate(fills)
        _rounds_behind.set(depth)
        self.rounds = max(self.rounds, depth)
        return scores

    async def evaluate_block(self, write: BlockWrite, count: int) -> np.ndarray:
        """Count, then score a block through the shared scheduler."""
        self.queries += count
        depth = _rounds_behind.get() + 1
        scores = await self._scheduler.evaluate_block(write, count)
        _rounds_behind.set(depth)
        self.rounds = max(self.rounds, depth)
        return scores

    def join(self) -> None:
        """Mark the calling task as waiting for every round so far (after a task group)."""
        _rounds_behind.set(self.rounds)


@dataclass
class SchedulerStats:
    """Counters of the backend traffic so far."""

    calls: int = 0
    mutants: int = 0
    backend_s: float = 0.0
    max_batch_seen: int = 0
    retries: int = 0  # backend calls repeated after a transient fault
    retrying: int = 0  # calls waiting to be retried right now
    retry_wait_s: float = 0.0  # time those calls spent waiting, summed over calls
    refused: int = 0  # calls the server refused for overload (429, RESOURCE_EXHAUSTED)
    peak_inflight: int = 0  # the most calls with the backend at once
    in_flight: int = 0  # calls with the backend right now
    latency_s: float = 0.0  # a call's round trip, smoothed over the recent answered calls
    down_since: float | None = None  # perf_counter of the first failure of an ongoing outage

    @property
    def mean_batch(self) -> float:
        """Average number of mutants per backend call."""
        return self.mutants / self.calls if self.calls else 0.0


@dataclass
class Scheduler:
    """Coalesce mutants from any number of concurrent callers into backend batches.

    Use as ``async with Scheduler(backend, config) as scheduler:`` and call
    :meth:`evaluate` from as many tasks as you like.
    """

    backend: Backend
    config: SchedulerConfig = field(default_factory=SchedulerConfig)
    stats: SchedulerStats = field(default_factory=SchedulerStats)

    def __post_init__(self) -> None:
        info = self.backend.info
        self.max_inflight: int = self.config.max_inflight or default_inflight(self.backend)
        wanted = self.config.max_batch or info.preferred_batch or DEFAULT_MAX_BATCH
        wanted = min(wanted, info.max_batch) if info.max_batch else wanted
        input_bytes = int(np.prod(info.input_shape, dtype=np.int64)) * np.dtype(info.dtype).itemsize
        self.max_inflight = budget_inflight(self.max_inflight, input_bytes)
        self.max_batch = budget_batch(wanted, input_bytes, self.max_inflight)
        if self.max_batch < wanted:
            logger.info(
                "max_batch %d → %d: %d buffers of %d inputs of %.0f MiB fit the %.0f MiB budget",
                wanted,
                self.max_batch,
                self.max_inflight,
                self.max_batch,
                input_bytes / 2**20,
                BUFFER_BUDGET_BYTES / 2**20,
            )
        self._retry = RetryPolicy(budget_s=self.config.retry_s)
        self._outage = Outage()
        self._input_bytes = input_bytes
        self._dtype = info.dtype
        #: memory the backend takes per row in this process (measured when it matters)
        self.row_bytes = 0
        self._size_calls(per_row=0, room=None)
        self._allocated = 0
        self._task_group: anyio.abc.TaskGroup | None = None
        send, receive = anyio.create_memory_object_stream[Segment](self.config.queue_size)
        self._send: MemoryObjectSendStream[Segment] = send
        self._receive: MemoryObjectReceiveStream[Segment] = receive
        #: the rest of a request split at the end of the last batch (goes first in the next)
        self._carry: Segment | None = None
        #: rows waiting in the queue and the carry (the backlog the in-flight window watches)
        self._queued_rows = 0
        #: calls with the backend right now (retries waiting for their turn excluded)
        self._at_backend = 0
        # unbounded: the window (≤ its ceiling) decides how many buffers exist
        free_send, free_receive = anyio.create_memory_object_stream[np.ndarray](math.inf)
        self._free_send = free_send
        self._free_receive = free_receive
        #: set once the batch is fitted to the memory budget (until then, one row per call)
        self._calibrated = anyio.Event()

    def _size_calls(self, per_row: int, room: int | None) -> None:
        """Buffer shape and in-flight window for ``max_batch`` (``room``: memory left)."""
        self._shape = (self.max_batch, *self.backend.info.input_shape)
        call_bytes = (self._input_bytes + per_row) * self.max_batch
        adaptive = self.config.adaptive_inflight
        if adaptive is None:  # adapt unless the caller fixed the number of calls
            adaptive = self.config.max_inflight is None
        ceiling = ADAPTIVE_CEILING if adaptive else self.max_inflight
        ceiling = min(ceiling, BUFFER_BUDGET_BYTES // max(1, self._input_bytes * self.max_batch))
        if room is not None:
            ceiling = min(ceiling, room // max(1, call_bytes))
        # a backend with no gate of its own to follow the window computes in this process
        cautious = not isinstance(self.backend, FollowsInflight)
        self.window = InflightWindow(self.max_inflight, ceiling, cautious=cautious)
        self._followed = 0  # the window size the backend's own gate was last told

    def _follow_window(self) -> None:
        """Tell a backend with its own gate (connection pool, limiter) the window's size."""
        size = self.window.size
        if size != self._followed and isinstance(self.backend, FollowsInflight):
            self.backend.follow_inflight(size)
        self._followed = size

    def _needs_calibration(self) -> bool:
        """Whether the calls in flight could matter to the memory budget: an in-process
        model, a budget, and enough rows at once (see :meth:`_calibrate`)."""
        budget = budget_bytes(self.config.memory_gib)
        rows = self.max_batch * self.max_inflight
        return self.backend.info.in_process and budget > 0 and rows >= CHECK_FROM_ROWS

    async def _calibrate(self) -> None:
        """Fit the batch to the memory budget beside the run's first calls: single rows (a
        target prediction) go on meanwhile, so the measuring calls do not delay the run by
        their round trips; batches of more rows wait for it. A model that cannot be measured
        keeps the batch size (its real calls then say what is wrong)."""
        budget = budget_bytes(self.config.memory_gib)
        try:
            fit = await fit_batch(
                self.backend, self.max_batch, self._input_bytes, self.max_inflight, budget
            )
            self.max_batch, self.row_bytes = fit.batch, fit.per_row
            self._size_calls(fit.per_row, fit.room)
        except Exception as exc:
            logger.debug("could not measure the model's memory per row: %s", exc)
        finally:
            self._calibrated.set()

    async def __aenter__(self) -> Scheduler:
        try:
            self._follow_window()
            for _ in range(self.max_inflight):
                self._free_send.send_nowait(self._new_buffer())
        except BaseException:
            self._close_streams()  # never started: nothing else will close them
            raise
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._dispatch)
        if self._needs_calibration():
            self._task_group.start_soon(self._calibrate)
        else:
            self._calibrated.set()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        if exc is not None:
            self._task_group.cancel_scope.cancel()
        self._send.close()
        try:
            return await self._task_group.__aexit__(exc_type, exc, tb)
        finally:
            self._close_streams()

    def _close_streams(self) -> None:
        for stream in (self._send, self._receive, self._free_send, self._free_receive):
            stream.close()

    async def evaluate(self, fills: Sequence[Fill]) -> np.ndarray:
        """Score the mutants that ``fills`` describe; returns one score row per fill, in order.

        Blocks while the queue is full (backpressure). Raises the backend's error if a batch
        holding one of these mutants fails.
        """
        if not fills:
            return np.empty((0, 0), dtype=np.float32)
        fills = fills if isinstance(fills, (list, tuple)) else list(fills)
        return await self.evaluate_block(partial(write_fills, fills), len(fills))

    async def evaluate_block(self, write: BlockWrite, count: int) -> np.ndarray:
        """Score a block of ``count`` mutants that ``write(out, start, stop)`` writes, any
        range of rows at a time; returns ``count`` score rows, in order.

        The block waits in the queue as one request, so its rows cost no Python time each;
        the dispatcher splits it across batches as they fill, and batches still mix rows of
        many requests. A cancelled caller's rows not yet in a batch are never written.
        """
        if count <= 0:
            return np.empty((0, 0), dtype=np.float32)
        ticket = Ticket(count)
        segment = Segment(write, ticket, 0, count)
        self._queued_rows += count
        try:
            try:  # no checkpoint while the queue has room (it costs ~10 µs)
                self._send.send_nowait(segment)
            except anyio.WouldBlock:
                await self._send.send(segment)
        except BaseException:
            self._queued_rows -= count  # never queued
            raise
        try:
            await ticket.done.wait()
        except BaseException:
            ticket.cancelled = True  # the dispatcher drops the rows still waiting
            raise
        if ticket.error is not None:
            raise ticket.error
        assert ticket.scores is not None
        return ticket.scores

    async def _dispatch(self) -> None:
        """Take a free buffer, gather a batch into it, hand it to a call task; repeat."""
        assert self._task_group is not None
        linger_s = self.config.linger_ms / 1000.0
        async with self._receive:
            while True:
                buffer = await self._take_buffer()
                batch = Batch()
                while not batch.rows:
                    if self._carry is not None:
                        segment, self._carry = self._carry, None
                    else:
                        try:
                            segment = await self._receive.receive()
                        except anyio.EndOfStream:
                            return
                    if segment.rows > 1 and not self._calibrated.is_set():
                        await self._calibrated.wait()
                    self._add(batch, segment)
                self._drain(batch)
                if batch.rows < self._batch_rows() and linger_s > 0:
                    with anyio.move_on_after(linger_s):
                        while batch.rows < self._batch_rows():
                            try:
                                self._add(batch, await self._receive.receive())
                            except anyio.EndOfStream:
                                break
                            self._drain(batch)
                self._task_group.start_soon(self._call, batch, buffer)

    def _add(self, batch: Batch, segment: Segment) -> None:
        """Put as much of ``segment`` as fits into ``batch``; the rest waits as the carry."""
        self._queued_rows -= segment.rows
        if segment.ticket.dropped:
            return
        room = self._batch_rows() - batch.rows
        if segment.rows > room:
            segment, rest = segment.split(room)
            self._carry = rest
            self._queued_rows += rest.rows
        batch.segments.append(segment)
        batch.rows += segment.rows

    def _new_buffer(self) -> np.ndarray:
        self._allocated += 1
        return np.empty(self._shape, dtype=self._dtype)

    async def _take_buffer(self) -> np.ndarray:
        """A free batch buffer; a new one while the in-flight window has grown past them (or
        for one made before the memory calibration lowered the batch size)."""
        while True:
            try:
                buffer = self._free_receive.receive_nowait()
            except anyio.WouldBlock:
                if self._allocated < self.window.size:
                    return self._new_buffer()
                buffer = await self._free_receive.receive()
            if buffer.shape == self._shape:
                return buffer
            self._allocated -= 1  # too large for the fitted batch: let it go

    def _give_back(self, buffer: np.ndarray) -> None:
        """Return a buffer after its call; drop it while the window is smaller than them."""
        if self._allocated > self.window.size:
            self._allocated -= 1
        else:
            self._free_send.send_nowait(buffer)

    async def _attempt(self, view: np.ndarray) -> np.ndarray:
        """One try of a call; a refusal for overload caps the in-flight window."""
        self._at_backend += 1
        self.stats.in_flight = self._at_backend
        self.stats.peak_inflight = max(self.stats.peak_inflight, self._at_backend)
        started = time.perf_counter()
        try:
            scores = await self.backend.infer(view)
            latency = time.perf_counter() - started
            smoothed = self.stats.latency_s
            self.stats.latency_s = latency if not smoothed else 0.8 * smoothed + 0.2 * latency
            self.stats.down_since = None
            return scores
        except Exception as exc:
            fault = transient(exc)
            if fault is not None and self.stats.down_since is None:
                self.stats.down_since = started
            if fault is not None and fault.overloaded:
                self.stats.refused += 1
                self.window.overloaded(self._at_backend)
                self._follow_window()
                logger.debug(
                    "server refused a call for load: at most %d calls now", self.window.size
                )
            raise
        finally:
            self._at_backend -= 1
            self.stats.in_flight = self._at_backend

    def _batch_rows(self) -> int:
        """The most rows a batch takes now: one until the memory calibration is done."""
        return self.max_batch if self._calibrated.is_set() else 1

    def _drain(self, batch: Batch) -> None:
        while batch.rows < self._batch_rows():
            try:
                self._add(batch, self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                return

    async def _call(self, batch: Batch, buffer: np.ndarray) -> None:
        """Materialise one batch into its buffer, score it, and route rows to their waiters."""
        count = batch.rows
        view = buffer[:count]
        try:
            await anyio.to_thread.run_sync(fill_all, batch, view)
            started = time.perf_counter()
            retries = self.stats.retries
            scores = np.asarray(
                await call_with_retry(
                    partial(self._attempt, view), self._retry, self.stats, self._outage
                )
            )
            round_trip_s = time.perf_counter() - started
            self.stats.backend_s += round_trip_s
            if self.stats.retries == retries:  # a retried call's time says nothing of load
                backlog = self._queued_rows >= self.max_batch
                self.window.observe(round_trip_s, backlog, full=count == self.max_batch)
                self._follow_window()
            if scores.ndim == 1:
                scores = scores[:, None]
            if scores.shape[0] != count:
                raise BackendError(
                    f"the backend returned {scores.shape[0]} score rows for a batch of {count}"
                )
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, RexStreamError)
                else BackendError(f"backend call failed: {type(exc).__name__}: {exc}")
            )
            if error is not exc:
                error.__cause__ = exc
            logger.debug("batch of %d failed: %s", count, error)
            for segment in batch.segments:
                segment.ticket.fail(error)
            return
        finally:
            self._give_back(buffer)
        self.stats.calls += 1
        self.stats.mutants += count
        self.stats.max_batch_seen = max(self.stats.max_batch_seen, count)
        offset = 0
        for segment in batch.segments:
            if not segment.ticket.dropped:
                segment.ticket.deliver(segment.start, scores[offset : offset + segment.rows])
            offset += segment.rows
