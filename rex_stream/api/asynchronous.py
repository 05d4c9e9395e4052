"""The sync facade and the progress-stream form of :func:`rex_stream.runs.rex`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np
from anyio.streams.memory import MemoryObjectReceiveStream

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend
from rex_stream.errors import raise_first_error
from rex_stream.progress import Progress
from rex_stream.result import Explanation
from rex_stream.runs.many import InputFailure, explain_many
from rex_stream.runs.rex import explain

if TYPE_CHECKING:
    from rex_stream.distributed.driver import InputSummary


def explain_sync(
    source: str | Path | np.ndarray,
    backend: Backend | str,
    config: ExplainConfig | None = None,
    *,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    **overrides: Any,
) -> Explanation:
    """Blocking :func:`explain` (sync); flat ``overrides`` (``iters=5``…) adjust ``config``.

    Raises the library's own errors (:class:`~rex_stream.InputError`,
    :class:`~rex_stream.BackendError`, …), never an exception group.
    """
    config = (config or ExplainConfig()).with_overrides(**overrides)

    async def run() -> Explanation:
        return await explain(
            source, backend, config, store=store, resume=resume, overwrite=overwrite
        )

    return anyio.run(run)


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


def explain_many_sync(
    sources: list[str | Path],
    backend: Backend | str,
    config: ExplainConfig | None = None,
    *,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    concurrent_inputs: int = 4,
    client: Any = None,
    split_iterations: int = 1,
    **overrides: Any,
) -> list[Explanation | InputFailure | InputSummary]:
    """Blocking :func:`~rex_stream.runs.rex_many` (sync): every input through one scheduler,
    or on the Dask cluster behind ``client``; flat ``overrides`` (``iters=5``…) adjust
    ``config``."""
    config = (config or ExplainConfig()).with_overrides(**overrides)

    async def run() -> list[Explanation | InputFailure | InputSummary]:
        return await explain_many(
            sources,
            backend,
            config,
            store=store,
            resume=resume,
            overwrite=overwrite,
            concurrent_inputs=concurrent_inputs,
            client=client,
            split_iterations=split_iterations,
        )

    with raise_first_error():
        return anyio.run(run)
