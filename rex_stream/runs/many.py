"""Many inputs through one backend and one scheduler, so that their mutants share batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings
from rex_stream.engine.failure_log import clear_failure, record_failure
from rex_stream.engine.session import Engine, open_engine
from rex_stream.errors import ConfigError, InputError, OutputError, StoreError, raise_first_error
from rex_stream.naming import input_name
from rex_stream.progress import Progress
from rex_stream.result import Explanation, InputFailure
from rex_stream.runs.rex import explain_input

__all__ = ["InputFailure", "explain_many"]

#: Errors that belong to one input: it fails alone, the run goes on.
INPUT_ERRORS = (InputError, StoreError, OutputError)


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
    on_result: Callable[[Explanation | InputFailure], None] | None = None,
    backend_settings: BackendSettings | None = None,
    keep_results: bool = True,
    on_progress: Callable[[int, Progress], None] | None = None,
) -> list[Explanation | InputFailure]:
    """Explain many inputs through one backend and one scheduler, ``concurrent_inputs`` at a
    time, so that their mutants share batches.

    An input that cannot be read, fit or stored fails alone (an :class:`InputFailure` in its
    place); a backend failure ends the run. ``names`` are the store group and output names
    (default: each file's name through :func:`rex_stream.naming.input_name`); two inputs
    sharing one in a store is refused. With ``keep_results=False`` each outcome is handed to
    ``on_result`` and released (the list returned is empty), so memory does not grow with
    the number of inputs. ``on_progress(index, event)`` receives each input's progress
    snapshots.

    This runs in this process; :func:`rex_stream.distributed.driver.explain_many_on_client`
    runs the same inputs on a Dask cluster (the public ``explain_many`` chooses).
    """
    if isinstance(sources, (str, Path)):
        raise ConfigError(
            f"explain_many takes a list of inputs, not {str(sources)!r} (for one: explain)"
        )
    if concurrent_inputs < 1:
        raise ConfigError(f"concurrent_inputs = {concurrent_inputs} must be >= 1")
    names = _names(sources, names, distinct=store is not None)
    results: list[Explanation | InputFailure | None] = [None] * len(sources)
    limiter = anyio.CapacityLimiter(max(1, concurrent_inputs))

    async def one(index: int, engine: Engine) -> None:
        source = sources[index]
        async with limiter:
            try:
                outcome: Explanation | InputFailure = await explain_input(
                    source,
                    engine.info,
                    engine.scheduler,
                    engine.config,
                    store=store,
                    resume=resume,
                    overwrite=overwrite,
                    name=names[index],
                    on_progress=_for_input(on_progress, index),
                )
            except INPUT_ERRORS as error:
                outcome = InputFailure(str(source), error)
        if store is not None:  # the store's failure records, for reports
            await anyio.to_thread.run_sync(note_outcome, store, names[index], outcome)
        if keep_results:
            results[index] = outcome
        if on_result is not None:
            on_result(outcome)

    with raise_first_error():
        async with open_engine(backend, config or ExplainConfig(), backend_settings) as engine:
            async with anyio.create_task_group() as group:
                for index in range(len(sources)):
                    group.start_soon(one, index, engine)
    return [r for r in results if r is not None]


def note_outcome(store: str | Path, name: str, outcome: object) -> None:
    """Record a failed input beside the store; forget an earlier failure of one explained."""
    if isinstance(outcome, InputFailure):
        record_failure(store, name, outcome.source, str(outcome.error))
    else:
        clear_failure(store, name)


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
