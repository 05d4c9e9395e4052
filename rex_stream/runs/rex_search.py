"""The search phase of a ReX run: a range of iterations, run concurrently, each committed to
the store as it ends.

One process runs every iteration of an input; a Dask task runs one range of them
(:mod:`rex_stream.distributed.tasks`). Both go through :func:`search_iterations`: iterations
the store already holds are resumed, not searched again (and refused when their mask value is
not this run's), iterations start in index order and only as many search at once as keep the
backend's batches full (:func:`iterations_in_flight`; ``max_concurrent_searches`` fixes the
number), so the share of iterations committed follows the share of the run's time spent and a
killed run keeps what it paid for; the adaptive distribution waits for the earlier iterations
its weights are built from. Every iteration draws from its own generators, so the results do
not depend on how many run at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import anyio.abc
import numpy as np

from rex_stream.causal.records import check_mask_values, commit_iteration, committed_iterations
from rex_stream.causal.responsibility import build_map
from rex_stream.causal.search import (
    IterationResult,
    input_key,
    iteration_mask_values,
    run_iteration,
)
from rex_stream.config import Distribution, ExplainConfig
from rex_stream.engine.geometry import SUBSETS
from rex_stream.engine.scheduler import Evaluator
from rex_stream.engine.store import ExplanationStore
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target
from rex_stream.errors import ConfigError, StoreError

#: seconds between live progress reports while iterations run
PROGRESS_TICK_S = 0.5

#: seconds between looks at ``rows_at_once`` while every slot is taken (the scheduler's
#: in-flight window grows between iteration ends, and new iterations should follow it)
WINDOW_LOOK_S = 0.01


def iterations_in_flight(rows_at_once: int, queue_len: int | None) -> int:
    """How many iterations keep ``rows_at_once`` rows (the batch size × the calls in flight)
    busy: each iteration has one level of ``14 × queue_len`` mutants waiting at a time (its
    next level starts as the first verdicts come back), so one more than fills the calls keeps
    a batch ready while the others are out."""
    per_level = len(SUBSETS) * (queue_len or 1)
    return max(1, math.ceil(rows_at_once / per_level)) + 1


@dataclass
class Searched:
    """What a search phase ends with: every iteration known (searched now or resumed from the
    store), by index, and how many of those in its range came from the store or were run."""

    results: dict[int, IterationResult]
    resumed: int
    ran: int

    def ordered(self) -> list[IterationResult]:
        """The iterations in index order (the order a map is built in)."""
        return [self.results[i] for i in sorted(self.results)]


def check_iteration_count(committed: dict[int, object], iters: int, location: str) -> None:
    """Refuse fewer iterations than the store already holds: the map would quietly leave
    committed ones out (more iterations extend a store; stores of any age hold their records,
    so no recorded setting is needed)."""
    beyond = sorted(i for i in committed if i >= iters)
    if beyond:
        raise StoreError(
            f"{location} holds {len(committed)} committed iterations of this input, up to "
            f"#{beyond[-1]}; --iters {iters} would leave {len(beyond)} of them out of the map: "
            f"give --iters {beyond[-1] + 1} or more, or --overwrite to start again"
        )


async def search_iterations(
    subject: Subject,
    target: Target,
    evaluator: Evaluator,
    config: ExplainConfig,
    seed: int,
    iterations: range | None = None,
    *,
    store: ExplanationStore | None = None,
    on_iteration: Callable[[int], None] | None = None,
    rows_at_once: Callable[[], int] | None = None,
) -> Searched:
    """Search the iterations of ``iterations`` (default: all ``config.search.iters``) that the
    store does not hold yet, committing each to ``store`` as it ends.

    ``rows_at_once()`` is how many rows the backend takes at once right now (the scheduler's
    batch size × its calls in flight, or × what they may grow to within a round trip while the
    window grows); it sets how many iterations search at once unless
    ``max_concurrent_searches`` does, and is looked at again every :data:`WINDOW_LOOK_S`
    while every slot is taken. Default: the batch size × ``max_inflight``.

    ``on_iteration(done)`` is told how many iterations are known after each one ends, and every
    :data:`PROGRESS_TICK_S` seconds in between (throughput changes while an iteration runs).
    """
    search = config.search
    wanted = range(search.iters) if iterations is None else iterations
    mask_values = iteration_mask_values(subject, config.image.mask_value, search.iters, seed)
    results: dict[int, IterationResult] = {}
    if store is not None:
        committed = await anyio.to_thread.run_sync(committed_iterations, store)
        check_iteration_count(committed, search.iters, store.location)
        results.update({i: r for i, r in committed.items() if i < search.iters})
        check_mask_values(results, mask_values, store.location)
    adaptive = search.distribution is Distribution.ADAPTIVE
    if adaptive and any(i not in results for i in range(wanted.start)):
        raise ConfigError(
            "the adaptive distribution cannot search a range of iterations before the earlier "
            "ones: each of its iterations reads the map of earlier ones"
        )
    pending = [i for i in wanted if i not in results]
    finished = {i: anyio.Event() for i in range(search.iters)}
    for i in results:
        finished[i].set()
    key = input_key(subject)
    if rows_at_once is None:
        calls = config.scheduler.max_inflight or 2
        rows_at_once = lambda: evaluator.max_batch * calls  # noqa: E731

    def window() -> int:
        if search.max_concurrent_searches is not None:
            return search.max_concurrent_searches
        return iterations_in_flight(rows_at_once(), search.queue_len)

    running = 0
    slots = anyio.Condition()

    async def prior_map(index: int) -> np.ndarray | None:
        """The map of iterations ``< index - adaptive_lag`` (so it is the same every run)."""
        before = range(max(0, index - search.adaptive_lag))
        for i in before:
            await finished[i].wait()
        if not before:
            return None
        return build_map(
            (results[i].ledger for i in before),
            target.classification,
            subject.spatial_shape,
            search.responsibility_style,
        )

    async def one(index: int) -> None:
        nonlocal running
        try:
            weights = await prior_map(index) if adaptive else None
            result = await run_iteration(
                index,
                subject,
                target,
                evaluator,
                search,
                config.scoring,
                seed,
                key,
                weights,
                mask_value=None if mask_values is None else mask_values[index],
            )
            if store is not None:
                await anyio.to_thread.run_sync(commit_iteration, store, result)
        finally:
            async with slots:
                running -= 1
                slots.notify_all()
        results[index] = result
        finished[index].set()
        if on_iteration is not None:
            on_iteration(len(results))

    async def feed(group: anyio.abc.TaskGroup) -> None:
        """Start the pending iterations in index order, each when a slot is free (and, for
        the adaptive distribution, once the iterations its weights read have ended)."""
        nonlocal running
        for index in pending:
            if adaptive:
                for i in range(max(0, index - search.adaptive_lag)):
                    await finished[i].wait()
            async with slots:
                while running >= window():
                    with anyio.move_on_after(WINDOW_LOOK_S):
                        await slots.wait()
                running += 1
            group.start_soon(one, index)

    async def tick(report: Callable[[int], None]) -> None:
        while True:
            await anyio.sleep(PROGRESS_TICK_S)
            report(len(results))

    async with anyio.create_task_group() as group:
        group.start_soon(feed, group)
        if on_iteration is not None:
            async with anyio.create_task_group() as ticker:
                ticker.start_soon(tick, on_iteration)
                for index in wanted:
                    await finished[index].wait()
                ticker.cancel_scope.cancel()
    return Searched(results, resumed=len(wanted) - len(pending), ran=len(pending))
