"""An :class:`Engine`: a backend and the scheduler in front of it, opened and closed together.

Every run (ReX, CEM, L2X, evaluation, a Dask worker) needs the same pairing: open the backend a
spec names (or take one the caller opened), settle how many calls go in flight for it, put a
:class:`~rex_stream.engine.scheduler.Scheduler` in front of it, and close both in reverse order
whatever happens. :func:`open_engine` is that pairing, written once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import anyio

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import (
    Backend,
    BackendSettings,
    ModelInfo,
    default_inflight,
    open_backend,
)
from rex_stream.engine.scheduler import Scheduler


@dataclass(frozen=True)
class Engine:
    """What a run queries through: the open backend, the scheduler batching its calls, and the
    config with the backend's concurrency settled."""

    backend: Backend
    scheduler: Scheduler
    config: ExplainConfig

    @property
    def info(self) -> ModelInfo:
        """The model's metadata (input shape, classes, identity)."""
        return self.backend.info


def settle_inflight(backend: Backend | str, config: ExplainConfig) -> ExplainConfig:
    """``config`` with ``max_inflight`` and ``adaptive_inflight`` decided for this backend:
    what the user gave, else the backend's default with the adaptive window on."""
    given = config.scheduler
    inflight = given.max_inflight or default_inflight(backend)
    adaptive = (
        given.max_inflight is None if given.adaptive_inflight is None else given.adaptive_inflight
    )
    return replace(
        config, scheduler=replace(given, max_inflight=inflight, adaptive_inflight=adaptive)
    )


@asynccontextmanager
async def backend_for_run(
    backend: Backend | str, config: ExplainConfig, settings: BackendSettings | None
) -> AsyncIterator[tuple[Backend, ExplainConfig]]:
    """The backend to use (a spec is opened here and closed after) and the config with the
    number of calls in flight settled for it."""
    config = settle_inflight(backend, config)
    if not isinstance(backend, str):
        yield backend, config
        return
    settings = settings or BackendSettings(max_inflight=config.scheduler.max_inflight)
    if config.image.mode == "text" and not settings.text_input:
        settings = replace(settings, text_input=True)  # a backend without metadata takes str
    opened = await open_backend(backend, settings)
    try:
        yield opened, config
    finally:
        with anyio.CancelScope(shield=True):
            await opened.aclose()


@asynccontextmanager
async def open_engine(
    backend: Backend | str,
    config: ExplainConfig | None = None,
    settings: BackendSettings | None = None,
) -> AsyncIterator[Engine]:
    """Open the backend (when given a spec) and a scheduler in front of it; close both after."""
    async with backend_for_run(backend, config or ExplainConfig(), settings) as (opened, resolved):
        async with Scheduler(opened, resolved.scheduler) as scheduler:
            yield Engine(opened, scheduler, resolved)
