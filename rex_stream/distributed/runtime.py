"""One engine per worker process: a worker plugin owning an event loop on its own thread.

The loop holds one :class:`~rex_stream.engine.session.Engine` (a backend and the scheduler in
front of it) for the worker's lifetime, so the inputs a worker runs at once (one per worker
thread) share coalesced batches. Dask tasks are plain sync functions: they hand a coroutine
to this loop with ``run_coroutine_threadsafe`` and block until it ends. Nothing here runs on
Dask's own worker loop, whose heartbeats a long call would stall.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import pickle
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from distributed import WorkerPlugin, get_worker

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings
from rex_stream.engine.session import Engine, open_engine
from rex_stream.errors import BackendError

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: How long a worker waits for its engine to close before it drops the loop anyway.
CLOSE_TIMEOUT_S = 10.0


class EngineRuntime(WorkerPlugin):
    """Worker plugin: a private event loop thread and, from the first task on, one engine.

    Only the spec and settings travel (backends do not pickle); the backend is opened lazily on
    the first task, so a model missing on a worker is that task's error, not a setup failure.
    """

    def __init__(self, spec: str, settings: BackendSettings, config: ExplainConfig) -> None:
        self.spec = spec
        self.settings = settings
        self.config = config
        token = hashlib.blake2b(pickle.dumps((spec, settings, config)), digest_size=6).hexdigest()
        self.name = f"rex-stream-engine-{token}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._engine: Future[Engine] | None = None
        self._stop: asyncio.Event | None = None
        self._serving: Future[None] | None = None
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "settings": self.settings, "config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["spec"], state["settings"], state["config"])  # type: ignore[misc]

    def setup(self, worker: Any) -> None:
        """Start the private loop thread (the engine opens on the first task)."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name="rex-stream-engine", daemon=True
        )
        self._thread.start()

    async def teardown(self, worker: Any) -> None:
        """Close the engine (backend and scheduler), then the loop; never block Dask's loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:  # work still running (its driver went away) ends first, freeing its Dask thread
            cancelled = asyncio.run_coroutine_threadsafe(self._cancel_work(), loop)
            await asyncio.wait_for(asyncio.wrap_future(cancelled), CLOSE_TIMEOUT_S)
        except Exception as exc:
            logger.warning("rex-stream work did not end cleanly: %s", exc)
        if self._serving is not None and self._stop is not None:
            loop.call_soon_threadsafe(self._stop.set)
            try:
                await asyncio.wait_for(asyncio.wrap_future(self._serving), CLOSE_TIMEOUT_S)
            except Exception as exc:  # closing must not fail the worker's shutdown
                logger.warning("rex-stream engine did not close cleanly: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, CLOSE_TIMEOUT_S)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None

    def run(self, work: Callable[[Engine], Awaitable[T]]) -> T:
        """Run ``work(engine)`` on the engine's loop and wait for its result (from a task)."""
        engine = self._open().result()
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self._call(work, engine), self._loop).result()

    async def _call(self, work: Callable[[Engine], Awaitable[T]], engine: Engine) -> T:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            return await work(engine)
        finally:
            self._tasks.discard(task)

    async def _cancel_work(self) -> None:
        """Cancel the tasks' work still on the loop and wait for it to unwind (locks freed)."""
        running = [task for task in self._tasks if not task.done()]
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=CLOSE_TIMEOUT_S)

    def stats(self) -> dict[str, float]:
        """This worker's backend traffic so far (zeros before the first task)."""
        engine = self._engine
        if engine is None or not engine.done() or engine.exception() is not None:
            return {"calls": 0, "mutants": 0, "backend_s": 0.0}
        stats = engine.result().scheduler.stats
        return {"calls": stats.calls, "mutants": stats.mutants, "backend_s": stats.backend_s}

    def _open(self) -> Future[Engine]:
        """The engine, opened once: the first task to come opens it, the others wait for it."""
        with self._lock:
            if self._engine is None:
                if self._loop is None:
                    raise BackendError("the rex-stream worker runtime is not set up")
                self._engine = Future()
                self._serving = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
            return self._engine

    async def _serve(self) -> None:
        """Open the backend and the scheduler, publish them, and hold them until teardown."""
        assert self._engine is not None
        self._stop = asyncio.Event()
        try:
            async with open_engine(self.spec, self.config, self.settings) as engine:
                self._engine.set_result(engine)
                await self._stop.wait()
        except BaseException as exc:
            if not self._engine.done():
                self._engine.set_exception(exc)
            else:
                logger.warning("rex-stream engine ended with an error: %s", exc)
            if not isinstance(exc, Exception):
                raise


def worker_runtime(name: str, worker: Any = None) -> EngineRuntime:
    """The runtime plugin called ``name`` on ``worker`` (default: the current task's)."""
    plugin = (worker or get_worker()).plugins.get(name)
    if not isinstance(plugin, EngineRuntime):
        raise BackendError(f"worker has no rex-stream runtime {name!r} (was it registered?)")
    return plugin
