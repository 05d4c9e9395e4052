"""The asynchronous API: every entry point, the real implementation of each.

Most live in their runs (:mod:`rex_stream.runs`) or in :mod:`rex_stream.evaluation` and are
gathered here; :func:`explain_many` chooses between one process and a Dask cluster, and
:func:`explain_stream` turns a run's progress into a stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
from anyio.streams.memory import MemoryObjectReceiveStream

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings
from rex_stream.errors import ConfigError, raise_first_error
from rex_stream.evaluation.detection import evaluate_detections
from rex_stream.evaluation.meta.input_test import meta_evaluate
from rex_stream.evaluation.meta.model_test import meta_evaluate_model
from rex_stream.evaluation.run import evaluate
from rex_stream.progress import Progress
from rex_stream.result import Explanation, InputFailure
from rex_stream.runs import detect_many, many
from rex_stream.runs.cem import explain_cem
from rex_stream.runs.detect import DetectionResult, DetectionSettings, explain_detections
from rex_stream.runs.l2x import explain_l2x, train_l2x
from rex_stream.runs.rex import explain
from rex_stream.runs.rows import explain_rows
from rex_stream.runs.texts import explain_text_rows, explain_texts

if TYPE_CHECKING:
    from rex_stream.distributed.driver import InputSummary

__all__ = [
    "evaluate",
    "evaluate_detections",
    "explain",
    "explain_cem",
    "explain_detections",
    "explain_detections_many",
    "explain_l2x",
    "explain_many",
    "explain_rows",
    "explain_stream",
    "explain_text_rows",
    "explain_texts",
    "meta_evaluate",
    "meta_evaluate_model",
    "train_l2x",
]


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
            f"explain_many takes a list of inputs, not {str(sources)!r} (for one: explain)",
            key="sources",
        )
    if concurrent_inputs < 1:
        detail = f"{concurrent_inputs} must be >= 1"
        raise ConfigError(f"concurrent_inputs = {detail}", key="concurrent_inputs", detail=detail)
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
    outcomes = await many.explain_many(
        sources,
        backend,
        config,
        store=store,
        resume=resume,
        overwrite=overwrite,
        concurrent_inputs=concurrent_inputs,
        names=names,
        on_result=on_result,
        backend_settings=backend_settings,
        keep_results=keep_results,
        on_progress=on_progress,
    )
    return list(outcomes)


async def explain_detections_many(
    sources: Sequence[str | Path],
    backend: Backend | str,
    config: ExplainConfig | None = None,
    settings: DetectionSettings | None = None,
    *,
    names: Sequence[str] | None = None,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    concurrent_inputs: int = 4,
    on_result: Callable[[int, Any], None] | None = None,
    on_progress: Callable[[int, int, Progress], None] | None = None,
    backend_settings: BackendSettings | None = None,
    client: Any = None,
) -> list[DetectionResult | InputFailure | InputSummary]:
    """The chosen detection(s) of every input (``settings``: layout, which targets), through
    one detector and one scheduler, ``concurrent_inputs`` inputs at a time; an input that
    fails does so alone (an :class:`InputFailure`). ``on_result(index, outcome)`` hears of
    each input as it ends, ``on_progress(input, target, event)`` of each target's progress.

    With ``client`` (a ``distributed.Client``) each input is a task on that Dask cluster:
    ``backend`` is a spec every worker opens, ``store`` a Zarr store they all see (each
    target's group ``<name>__detection-<i>``), each input comes back as an
    :class:`~rex_stream.distributed.InputSummary` (its ``summary`` is the run's JSON
    summary), and a run always resumes what the store holds.
    """
    if isinstance(sources, (str, Path)):
        raise ConfigError(
            f"explain_detections_many takes a list of inputs, not {str(sources)!r}",
            key="sources",
        )
    if client is None:
        return list(
            await detect_many.explain_detections_many(
                sources, backend, config, settings, names=names, store=store, resume=resume,
                overwrite=overwrite, concurrent_inputs=concurrent_inputs, on_result=on_result,
                on_progress=on_progress, backend_settings=backend_settings,
            )
        )  # fmt: skip
    from rex_stream.distributed.detect_tasks import explain_detections_on_client

    where = {str(source): index for index, source in enumerate(sources)}

    def report(outcome: Any) -> None:
        if on_result is not None:
            on_result(where[outcome.source], outcome)

    return list(
        await explain_detections_on_client(
            client, sources, backend, config, settings, store=store, names=names,
            overwrite=overwrite, backend_settings=backend_settings, on_result=report,
        )
    )  # fmt: skip


@asynccontextmanager
async def explain_stream(
    source: str | Path | np.ndarray,
    backend: Backend | str,
    config: ExplainConfig | None = None,
    **kwargs: Any,
) -> AsyncIterator[MemoryObjectReceiveStream[Progress | Explanation]]:
    """Run :func:`explain` in the background and stream its progress, then its result (async).

    ``async with explain_stream(img, "model.onnx") as events: async for event in events: …``
    yields :class:`Progress` snapshots and finally the :class:`Explanation`. Leaving the block
    early cancels the run.
    """
    send, receive = anyio.create_memory_object_stream[Progress | Explanation](64)

    def publish(event: Progress) -> None:
        try:
            send.send_nowait(event)
        except anyio.WouldBlock:
            pass  # a slow consumer misses intermediate snapshots, never the result

    async def run() -> None:
        async with send:
            result = await explain(source, backend, config, on_progress=publish, **kwargs)
            await send.send(result)

    with raise_first_error():
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            try:
                yield receive
            finally:
                group.cancel_scope.cancel()
                receive.close()
