"""The search phase of a ReX run: a range of iterations, run concurrently, each committed to
the store as it ends.

One process runs every iteration of an input; a Dask task runs one range of them
(:mod:`rex_stream.distributed.tasks`). Both go through :func:`search_iterations`: iterations
the store already holds are resumed, not searched again (and refused when their mask value is
not this run's), at most ``max_concurrent_searches`` search at once, and the adaptive
distribution waits for the earlier iterations its weights are built from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import anyio
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
from rex_stream.engine.scheduler import Evaluator
from rex_stream.engine.store import ExplanationStore
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target
from rex_stream.errors import ConfigError

#: seconds between live progress reports while iterations run
PROGRESS_TICK_S = 0.5


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
) -> Searched:
    """Search the iterations of ``iterations`` (default: all ``config.search.iters``) that the
    store does not hold yet, committing each to ``store`` as it ends.

    ``on_iteration(done)`` is told how many iterations are known after each one ends, and every
    :data:`PROGRESS_TICK_S` seconds in between (throughput changes while an iteration runs).
    """
    search = config.search
    wanted = range(search.iters) if iterations is None else iterations
    mask_values = iteration_mask_values(subject, config.image.mask_value, search.iters, seed)
    results: dict[int, IterationResult] = {}
    if store is not None:
        committed = await anyio.to_thread.run_sync(committed_iterations, store)
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
    limiter = anyio.CapacityLimiter(search.max_concurrent_searches)
    key = input_key(subject)

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
        weights = await prior_map(index) if adaptive else None
        async with limiter:
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
        results[index] = result
        finished[index].set()
        if on_iteration is not None:
            on_iteration(len(results))

    async def tick(report: Callable[[int], None]) -> None:
        while True:
            await anyio.sleep(PROGRESS_TICK_S)
            report(len(results))

    async with anyio.create_task_group() as group:
        for index in pending:
            group.start_soon(one, index)
        if on_iteration is not None:
            async with anyio.create_task_group() as ticker:
                ticker.start_soon(tick, on_iteration)
                for index in wanted:
                    await finished[index].wait()
                ticker.cancel_scope.cancel()
    return Searched(results, resumed=len(wanted) - len(pending), ran=len(pending))
