"""Many inputs through one backend and one scheduler, so that their mutants share batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings, ModelInfo
from rex_stream.engine.scheduler import Scheduler
from rex_stream.engine.session import backend_for_run
from rex_stream.errors import (
    ConfigError,
    InputError,
    OutputError,
    RexStreamError,
    StoreError,
    raise_first_error,
)
from rex_stream.naming import input_name
from rex_stream.progress import Progress
from rex_stream.result import Explanation
from rex_stream.runs.rex import explain_input

if TYPE_CHECKING:
    from rex_stream.distributed.driver import InputSummary


@dataclass(frozen=True)
class InputFailure:
    """An input of :func:`explain_many` that could not be explained, and why."""

    source: str
    error: RexStreamError


async def explain_many(
    sources: Sequence[str | Path],
    backend: Backend | str,
    config: ExplainConfig | None = None,
    *,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    concurrent_inputs: int = 4,
    names: Sequence[str] | None = None,
    on_result: Callable[[Any], None] | None = None,
    backend_settings: BackendSettings | None = None,
    keep_results: bool = True,
    on_progress: Callable[[int, Progress], None] | None = None,
    client: Any = None,
    split_iterations: int = 1,
) -> list[Explanation | InputFailure | InputSummary]:
    """Explain many inputs through one backend and one scheduler, ``concurrent_inputs`` at a
    time, so that their mutants share batches.

    An input that cannot be read, fit or stored fails alone (an :class:`InputFailure` in its
    place); a backend failure ends the run. ``names`` are the store group and output names
    (default: each file's name through :func:`rex_stream.naming.input_name`); two inputs
    sharing one in a store is refused. With ``keep_results=False`` each outcome is handed to
    ``on_result`` and released (the list returned is empty), so memory does not grow with
    the number of inputs. ``on_progress(index, event)`` receives each input's progress
    snapshots (one process only).

    With ``client`` (a ``distributed.Client``; ``pip install 'rex-stream[dask]'``) the inputs
    run on that Dask cluster (:mod:`rex_stream.distributed`): ``backend`` is a spec every
    worker opens, ``store`` a shared Zarr store they all see, each input comes back as an
    :class:`~rex_stream.distributed.InputSummary` (its map stays in the store), a run always
    resumes what the store holds, and ``split_iterations`` spreads each input's iterations
    over that many tasks.
    """
    if isinstance(sources, (str, Path)):
        raise ConfigError(
            f"explain_many takes a list of inputs, not {str(sources)!r} (for one: explain)"
        )
    if concurrent_inputs < 1:
        raise ConfigError(f"concurrent_inputs = {concurrent_inputs} must be >= 1")
    if client is not None:
        from rex_stream.distributed.driver import explain_many_on_client

        return await explain_many_on_client(
            client,
            sources,
            backend,
            config,
            store=store,
            overwrite=overwrite,
            names=names,
            on_result=on_result,
            backend_settings=backend_settings,
            split_iterations=split_iterations,
        )
    names = _names(sources, names, distinct=store is not None)
    results: list[Explanation | InputFailure | None] = [None] * len(sources)
    limiter = anyio.CapacityLimiter(max(1, concurrent_inputs))

    async def one(
        index: int, info: ModelInfo, scheduler: Scheduler, resolved: ExplainConfig
    ) -> None:
        source = sources[index]
        async with limiter:
            try:
                outcome: Explanation | InputFailure = await explain_input(
                    source,
                    info,
                    scheduler,
                    resolved,
                    store=store,
                    resume=resume,
                    overwrite=overwrite,
                    name=names[index],
                    on_progress=_for_input(on_progress, index),
                )
            except (InputError, StoreError, OutputError) as error:
                outcome = InputFailure(str(source), error)
        if keep_results:
            results[index] = outcome
        if on_result is not None:
            on_result(outcome)

    with raise_first_error():
        async with backend_for_run(backend, config or ExplainConfig(), backend_settings) as (
            opened,
            resolved,
        ):
            async with Scheduler(opened, resolved.scheduler) as scheduler:
                async with anyio.create_task_group() as group:
                    for index in range(len(sources)):
                        group.start_soon(one, index, opened.info, scheduler, resolved)
    return [r for r in results if r is not None]


def _for_input(
    on_progress: Callable[[int, Progress], None] | None, index: int
) -> Callable[[Progress], None] | None:
    """One input's progress callback, tagged with its index."""
    if on_progress is None:
        return None
    report = on_progress

    def forward(event: Progress) -> None:
        report(index, event)

    return forward


def _names(
    sources: Sequence[str | Path], names: Sequence[str] | None, *, distinct: bool
) -> list[str]:
    """One store name per source (``distinct``: no two alike)."""
    if names is None:
        names = [input_name(Path(source).name) for source in sources]
    elif len(names) != len(sources):
        raise ConfigError(f"{len(names)} names for {len(sources)} inputs")
    first: dict[str, int] = {}
    for index, name in enumerate(names if distinct else ()):
        if name in first:
            raise ConfigError(
                f"inputs {sources[first[name]]} and {sources[index]} would share the store "
                f"name {name!r}; give each its own name (names=…)"
            )
        first[name] = index
    return list(names)
