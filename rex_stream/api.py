"""The sync facade and the progress-stream form of :func:`rex_stream.explain`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from anyio.streams.memory import MemoryObjectReceiveStream

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend
from rex_stream.explain import explain
from rex_stream.progress import Progress
from rex_stream.result import Explanation


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
    """Blocking :func:`explain`; flat ``overrides`` (``iters=5``…) adjust ``config``."""
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
    """Run :func:`explain` in the background and stream its progress, then its result.

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

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        try:
            yield receive
        finally:
            group.cancel_scope.cancel()
            receive.close()
