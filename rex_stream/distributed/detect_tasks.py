"""Detection on Dask: each input's chosen detection(s) as one task, on a worker that opens its
own detector.

Only the backend spec, the settings and the :class:`~rex_stream.runs.detect.DetectionSettings`
travel (they pickle); each worker process opens one detector (every named output, read through
the layout) and one scheduler in front of it, so the targets of every input a worker runs at
once share batches. A task writes each target's group (``<input>__detection-<i>``) straight to
the shared store, resuming what it holds, and sends back the run's small JSON summary: the
store ends as a one-process run leaves it.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from rex_stream.config import ExplainConfig
from rex_stream.distributed.driver import ClusterReport, Outcome, explain_on_cluster
from rex_stream.distributed.runtime import EngineRuntime, worker_runtime
from rex_stream.distributed.shared_store import create_root
from rex_stream.distributed.tasks import FATAL
from rex_stream.engine.backend import BackendSettings
from rex_stream.engine.session import Engine
from rex_stream.errors import ConfigError, RexStreamError, raise_first_error
from rex_stream.runs.detect import DetectionSettings, explain_detections_with, open_detector
from rex_stream.runs.detect_many import store_names
from rex_stream.runs.many import INPUT_ERRORS

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["DetectionRuntime", "explain_detection_shard", "explain_detections_on_cluster"]

Summary = dict[str, Any]
logger = logging.getLogger(__name__)


class DetectionRuntime(EngineRuntime):
    """A worker's runtime whose engine is a detector: the backend asked for every named output,
    read through ``detection.layout``, with its scheduler."""

    def __init__(
        self,
        spec: str,
        settings: BackendSettings,
        config: ExplainConfig,
        detection: DetectionSettings | None = None,
    ) -> None:
        super().__init__(spec, settings, config)
        self.detection = detection or DetectionSettings()
        state = pickle.dumps((spec, settings, config, self.detection))
        self.name = f"rex-stream-detect-{hashlib.blake2b(state, digest_size=6).hexdigest()}"

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "detection": self.detection}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["spec"], state["settings"], state["config"], state["detection"]
        )

    async def _serve(self) -> None:
        """Open the detector and its scheduler, publish them, hold them until teardown."""
        import asyncio

        assert self._engine is not None
        self._stop = asyncio.Event()
        detection = self.detection
        try:
            opened = open_detector(
                self.spec, self.config, detection.layout, self.settings, detection.max_detections
            )
            async with opened as (detector, scheduler, resolved):
                self._engine.set_result(Engine(detector, scheduler, resolved))
                await self._stop.wait()
        except BaseException as exc:
            if not self._engine.done():
                self._engine.set_exception(exc)
            else:
                logger.warning("rex-stream detector ended with an error: %s", exc)
            if not isinstance(exc, Exception):
                raise


def explain_detection_shard(
    runtime: str, store: str, items: list[tuple[str, str]]
) -> list[Summary] | Summary:
    """The task: every ``(source, name)`` input's targets at once on this worker's detector;
    an error of one input is its summary, an error that ends the run a ``fatal`` summary."""
    plugin = worker_runtime(runtime)
    detection = plugin.detection if isinstance(plugin, DetectionRuntime) else DetectionSettings()

    async def work(engine: Engine) -> list[Summary]:
        summaries: list[Summary] = [{} for _ in items]

        async def one(position: int, source: str, name: str) -> None:
            try:
                result = await explain_detections_with(
                    source,
                    engine.scheduler,
                    engine.backend,  # type: ignore[arg-type]  # the runtime's detector
                    engine.config,
                    detection,
                    store=store,
                    resume=True,
                    name=name,
                )
            except INPUT_ERRORS as error:
                summaries[position] = {
                    "input": source, "name": name, "error": str(error),
                    "kind": type(error).__name__,
                }  # fmt: skip
                return
            summary = result.summary()
            summary["name"] = name
            summaries[position] = summary

        async with anyio.create_task_group() as group:
            for position, (source, name) in enumerate(items):
                group.start_soon(one, position, source, name)
        return summaries

    try:
        with raise_first_error():
            return plugin.run(work)
    except RexStreamError as error:
        return {FATAL: str(error), "kind": type(error).__name__}


def explain_detections_on_cluster(
    client: Client,
    sources: Sequence[str | Path],
    backend: str,
    config: ExplainConfig | None = None,
    settings: DetectionSettings | None = None,
    *,
    store: str | Path,
    names: Sequence[str] | None = None,
    overwrite: bool = False,
    backend_settings: BackendSettings | None = None,
    inputs_per_task: int = 1,
    on_result: Callable[[Outcome], None] | None = None,
) -> ClusterReport:
    """Every input's chosen detection(s) on the cluster behind ``client``, one task per input
    (or ``inputs_per_task``), into the shared store; a rerun resumes every target."""
    if not isinstance(backend, str):
        raise ConfigError("a cluster run needs a backend spec (a Backend object cannot travel)")
    settings = settings or DetectionSettings()
    names = store_names(sources, names)
    if overwrite:
        _remove_targets(store, names)
    return explain_on_cluster(
        client,
        sources,
        backend,
        config,
        store=store,
        names=names,
        backend_settings=backend_settings,
        inputs_per_task=inputs_per_task,
        on_result=on_result,
        make_runtime=partial(DetectionRuntime, detection=settings),
        shard_task=explain_detection_shard,
    )


async def explain_detections_on_client(
    client: Client,
    sources: Sequence[str | Path],
    backend: Any,
    config: ExplainConfig | None,
    settings: DetectionSettings | None,
    *,
    store: str | Path | None,
    names: Sequence[str] | None,
    overwrite: bool,
    backend_settings: BackendSettings | None,
    on_result: Callable[[Outcome], None] | None,
) -> list[Outcome]:
    """:func:`explain_detections_on_cluster` in a worker thread (for async callers),
    ``on_result`` called back on the caller's event loop."""
    if store is None:
        raise ConfigError("a cluster run needs a store: the workers write every map to it")

    def report(outcome: Outcome) -> None:
        if on_result is not None:
            anyio.from_thread.run_sync(on_result, outcome)

    def drive() -> list[Outcome]:
        return explain_detections_on_cluster(
            client, sources, backend, config, settings, store=store, names=names,
            overwrite=overwrite, backend_settings=backend_settings, on_result=report,
        ).outcomes  # fmt: skip

    return await anyio.to_thread.run_sync(drive)


def _remove_targets(store: str | Path, names: Sequence[str]) -> None:
    """``--overwrite``: every target group of the named inputs is removed first."""
    import zarr

    from rex_stream.engine.store_location import parse_store

    where = parse_store(store)
    location = where.url if not where.is_local else str(where.local_path().expanduser())
    if where.is_local and not Path(location).exists():
        return
    try:
        keys = list(zarr.open_group(location, mode="r").group_keys())
    except (OSError, ValueError, KeyError, FileNotFoundError):
        return
    prefixes = tuple(f"{name}__detection-" for name in names)
    create_root(store, [key for key in keys if key.startswith(prefixes)], overwrite=True)
