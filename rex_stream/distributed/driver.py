"""The driver: windowed submission of inputs to a Dask cluster, one summary back per input.

The driver creates the store's root, registers the worker runtime, keeps a bounded number of
inputs in flight (backpressure for a directory of a million files) and collects small
summaries as they complete. A task lost with its worker is rescheduled by Dask on another
worker; since every task resumes what the store holds, the store ends as one machine would
leave it. An input that kills its worker every time ends as a failure of its own
(``KilledWorker`` after Dask's allowed failures); the others finish.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rex_stream.config import Distribution, ExplainConfig
from rex_stream.distributed.inputs import names_for
from rex_stream.distributed.shared_store import check_workers_see, create_root, remove_if_empty
from rex_stream.engine.backend import BackendSettings, default_inflight
from rex_stream.errors import BackendError, ConfigError, RexStreamError
from rex_stream.naming import check_name
from rex_stream.result import Explanation, InputFailure, InputSummary

if TYPE_CHECKING:
    from distributed import Client, Future

    from rex_stream.distributed.runtime import EngineRuntime

logger = logging.getLogger(__name__)

#: How long to wait for the first worker of a remote cluster.
WORKER_WAIT_S = 60.0


Outcome = InputSummary | InputFailure


@dataclass
class ClusterReport:
    """What a cluster run did: one outcome per input (in input order) and worker counters."""

    outcomes: list[Outcome]
    workers: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_s: float = 0.0


@dataclass(frozen=True)
class _Unit:
    """Inputs whose outcomes one final future carries (a shard, or one split input)."""

    positions: tuple[int, ...]


def explain_on_cluster(
    client: Client,
    sources: Sequence[str | Path],
    backend: str,
    config: ExplainConfig | None = None,
    *,
    store: str | Path,
    names: Sequence[str] | None = None,
    overwrite: bool = False,
    backend_settings: BackendSettings | None = None,
    inputs_per_task: int = 1,
    split_iterations: int = 1,
    window: int | None = None,
    on_result: Callable[[Outcome], None] | None = None,
    make_runtime: Callable[[str, BackendSettings, ExplainConfig], EngineRuntime] | None = None,
    shard_task: Callable[..., Any] | None = None,
) -> ClusterReport:
    """Explain ``sources`` on the cluster behind ``client`` into the shared Zarr ``store``.

    ``backend`` is a spec every worker can open (a model path they can see, a server they can
    reach). Inputs run ``inputs_per_task`` to a task; with ``split_iterations`` K > 1 each
    input's iterations spread over K tasks. At most ``window`` units are in flight (default:
    twice the cluster's threads). Reruns resume; finished inputs cost no query.
    ``make_runtime`` and ``shard_task`` run another kind of task (default: a ReX input;
    :mod:`rex_stream.distributed.detect_tasks` explains detections).
    """
    from rex_stream.distributed.runtime import EngineRuntime

    started = time.perf_counter()
    config = config or ExplainConfig()
    if not isinstance(backend, str):
        raise ConfigError("a cluster run needs a backend spec (a Backend object cannot travel)")
    _check_options(config, inputs_per_task, split_iterations)
    paths = [str(s) for s in sources]
    names = _names(paths, names)
    fresh = not Path(store).expanduser().exists()
    root = create_root(store, names, overwrite)
    try:
        _wait_for_workers(client)
        check_workers_see(client, root)
        settings = backend_settings or BackendSettings(
            max_inflight=config.scheduler.max_inflight or default_inflight(backend)
        )
        runtime = (make_runtime or EngineRuntime)(backend, settings, config)
        client.register_plugin(runtime, name=runtime.name)
        outcomes: list[Outcome | None] = [None] * len(paths)
        submit = _submitter(
            client, runtime.name, root, paths, names, config, split_iterations, shard_task
        )
        units = _units(len(paths), inputs_per_task, split_iterations)
        limit = window or max(4, 2 * sum(client.nthreads().values()))
        try:
            with closing(_windowed(client, units, submit, limit, paths, names)) as finished:
                for position, outcome in finished:  # closing: a stop cancels what is in flight
                    outcomes[position] = outcome
                    if on_result is not None:
                        on_result(outcome)
            workers = client.run(_engine_counters, runtime.name)
        finally:
            try:
                client.unregister_worker_plugin(runtime.name)
            except Exception as exc:  # the cluster may be going away; the store is what matters
                logger.warning("could not remove the rex-stream runtime from the workers: %s", exc)
    except BaseException:
        if fresh:  # a run that wrote nothing leaves nothing behind
            remove_if_empty(root)
        raise
    return ClusterReport(
        [o for o in outcomes if o is not None], workers, round(time.perf_counter() - started, 3)
    )


async def explain_many_on_client(
    client: Client,
    sources: Sequence[str | Path],
    backend: Any,
    config: ExplainConfig | None,
    *,
    store: str | Path | None,
    overwrite: bool,
    names: Sequence[str] | None,
    on_result: Callable[[Outcome], None] | None,
    backend_settings: BackendSettings | None,
    split_iterations: int,
) -> list[Explanation | InputFailure | InputSummary]:
    """:func:`rex_stream.runs.many.explain_many` on a cluster: the blocking
    :func:`explain_on_cluster` in a worker thread, ``on_result`` called back on the caller's
    event loop. Each input comes back as an :class:`InputSummary` (its map stays in the
    store) or an :class:`InputFailure`; a run always resumes what the store holds, and
    ``split_iterations`` spreads each input's iterations over that many tasks."""
    import anyio

    if store is None:
        raise ConfigError("a cluster run needs a store: the workers write every map to it")

    def report(outcome: Outcome) -> None:
        if on_result is not None:
            anyio.from_thread.run_sync(on_result, outcome)

    def drive() -> list[Explanation | InputFailure | InputSummary]:
        return explain_on_cluster(
            client,
            sources,
            backend,
            config,
            store=store,
            names=names,
            overwrite=overwrite,
            backend_settings=backend_settings,
            split_iterations=split_iterations,
            on_result=report,
        ).outcomes  # type: ignore[return-value]

    return await anyio.to_thread.run_sync(drive)


def _windowed(
    client: Client,
    units: Sequence[_Unit],
    submit: Callable[[_Unit], Future],
    limit: int,
    paths: Sequence[str],
    names: Sequence[str],
) -> Generator[tuple[int, Outcome], None, None]:
    """Submit ``units`` with at most ``limit`` in flight; yield outcomes as they complete (a
    failure that ends the run cancels what is still in flight)."""
    from distributed import as_completed

    queue = iter(units)
    pending: dict[Future, _Unit] = {}
    completed = as_completed()
    try:
        for unit in _take(queue, limit):
            future = submit(unit)
            pending[future] = unit
            completed.add(future)
        for future in completed:
            unit = pending.pop(future)
            yield from _outcomes(future, unit, paths, names)
            future.release()
            for unit in _take(queue, 1):
                following = submit(unit)
                pending[following] = unit
                completed.add(following)
    finally:
        if pending:
            client.cancel(list(pending))


def _check_options(config: ExplainConfig, inputs_per_task: int, split: int) -> None:
    if inputs_per_task < 1:
        raise ConfigError(f"inputs per task must be >= 1, not {inputs_per_task}")
    if split < 1:
        raise ConfigError(f"--split-iterations must be >= 1, not {split}")
    if split > 1 and inputs_per_task > 1:
        raise ConfigError("--split-iterations runs one input per task chain; drop the shards")
    if split > 1 and config.search.distribution is Distribution.ADAPTIVE:
        raise ConfigError(
            "--split-iterations cannot split the adaptive distribution: each of its iterations "
            "reads the map of earlier ones; use another distribution or no split"
        )


def _names(sources: Sequence[str], names: Sequence[str] | None) -> list[str]:
    """One store group per input (default: the file's name through
    :func:`rex_stream.naming.input_name`, ``__row<N>`` added for a table row), no two alike,
    each usable as it is."""
    if names is None:
        names = names_for(sources)
    if len(names) != len(sources):
        raise ConfigError(f"{len(names)} names for {len(sources)} inputs")
    first: dict[str, str] = {}
    for source, name in zip(sources, names):
        check_name(name)
        if name in first:
            raise ConfigError(
                f"inputs {first[name]} and {source} would share the store name {name!r}; "
                "give each its own name (names=…)"
            )
        first[name] = source
    return list(names)


def _wait_for_workers(client: Client) -> None:
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError as exc:
        from rex_stream.distributed.cluster import ClusterError

        raise ClusterError(f"the Dask cluster has no workers (waited {WORKER_WAIT_S:g} s)") from exc


def _units(count: int, per_task: int, split: int) -> list[_Unit]:
    step = 1 if split > 1 else per_task
    return [_Unit(tuple(range(first, min(first + step, count)))) for first in range(0, count, step)]


def _take(queue: Iterator[_Unit], count: int) -> list[_Unit]:
    taken = []
    for unit in queue:
        taken.append(unit)
        if len(taken) == count:
            break
    return taken


def _submitter(
    client: Client,
    runtime: str,
    root: str,
    sources: Sequence[str],
    names: Sequence[str],
    config: ExplainConfig,
    split: int,
    shard_task: Callable[..., Any] | None = None,
) -> Callable[[_Unit], Future]:
    """How a unit becomes futures; returns the one whose result carries its outcomes. Keys
    name the tasks on the dashboard and are unique to this run."""
    from rex_stream.distributed import tasks

    token = uuid.uuid4().hex[:8]

    def submit(unit: _Unit) -> Future:
        first = unit.positions[0]
        if split == 1:
            items = [(sources[p], names[p]) for p in unit.positions]
            task = shard_task or tasks.explain_shard
            return client.submit(task, runtime, root, items, key=f"rex-explain-{first}-{token}")
        source, name = sources[first], names[first]
        prepared = client.submit(
            tasks.prepare_input, runtime, root, source, name, key=f"rex-prepare-{first}-{token}"
        )
        ranges = [
            client.submit(
                tasks.run_iterations,
                runtime,
                root,
                source,
                name,
                prepared,
                start,
                stop,
                key=f"rex-iterations-{first}.{start}-{token}",
            )
            for start, stop in iteration_ranges(config.search.iters, split)
        ]
        return client.submit(
            tasks.finalise_input,
            runtime,
            root,
            source,
            name,
            prepared,
            *ranges,
            key=f"rex-finalise-{first}-{token}",
        )

    return submit


def iteration_ranges(iterations: int, parts: int) -> list[tuple[int, int]]:
    """``iterations`` cut into at most ``parts`` contiguous, near-equal, non-empty ranges."""
    parts = max(1, min(parts, iterations))
    bounds = [iterations * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


def _outcomes(
    future: Future, unit: _Unit, sources: Sequence[str], names: Sequence[str]
) -> Iterator[tuple[int, Outcome]]:
    """A completed future's outcomes; a backend failure ends the run, a dead worker fails only
    the inputs it held."""
    from distributed import KilledWorker

    from rex_stream.distributed.tasks import FATAL

    try:
        result = future.result()
    except KilledWorker as exc:
        for position in unit.positions:
            error = RexStreamError(f"{sources[position]}: its Dask worker died every try ({exc})")
            yield position, InputFailure(sources[position], error)
        return
    except RexStreamError as exc:
        raise type(exc)(f"on a Dask worker: {exc}") from exc
    except Exception as exc:
        raise BackendError(f"on a Dask worker: {type(exc).__name__}: {exc}") from exc
    if isinstance(result, dict) and FATAL in result:
        kinds = {cls.__name__: cls for cls in _fatal_errors()}
        raise kinds.get(str(result.get("kind")), BackendError)(f"on a Dask worker: {result[FATAL]}")
    summaries = result if isinstance(result, list) else [result]
    for position, summary in zip(unit.positions, summaries):
        yield position, _outcome(summary, sources[position], names[position])


def _outcome(summary: dict[str, Any], source: str, name: str) -> Outcome:
    if "error" in summary:
        kinds = {cls.__name__: cls for cls in _errors()}
        cls = kinds.get(str(summary.get("kind")), RexStreamError)
        return InputFailure(source, cls(summary["error"]))
    return InputSummary(source, name, summary)


def _fatal_errors() -> list[type[RexStreamError]]:
    """Every error class a task may report as fatal, by name."""
    found: list[type[RexStreamError]] = []
    pending: list[type[RexStreamError]] = [RexStreamError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def _errors() -> list[type[RexStreamError]]:
    from rex_stream.distributed.tasks import INPUT_ERRORS

    return list(INPUT_ERRORS)


def _engine_counters(name: str, dask_worker: Any = None) -> dict[str, float]:
    """This worker's engine counters (calls, mutants, backend time), for reports and tests."""
    from rex_stream.distributed.runtime import worker_runtime

    return worker_runtime(name, dask_worker).stats()
