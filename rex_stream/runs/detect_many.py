"""Explaining a detector on many inputs: every input's targets through one detector and one
scheduler, so that the searches of every input and every target share batches.

An input that cannot be read, detects nothing to explain or cannot be stored fails alone (an
:class:`~rex_stream.result.InputFailure` in its place); a backend failure ends the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings
from rex_stream.errors import ConfigError, raise_first_error
from rex_stream.naming import input_name
from rex_stream.progress import Progress
from rex_stream.result import InputFailure
from rex_stream.runs.detect import (
    DetectionResult,
    DetectionSettings,
    explain_detections_with,
    open_detector,
)
from rex_stream.runs.many import INPUT_ERRORS, note_outcome

#: ``(input index, target index, progress)``
ManyProgress = Callable[[int, int, Progress], None]
Outcome = DetectionResult | InputFailure


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
    on_result: Callable[[int, Outcome], None] | None = None,
    on_progress: ManyProgress | None = None,
    backend_settings: BackendSettings | None = None,
) -> list[Outcome]:
    """The chosen detection(s) of every input, ``concurrent_inputs`` inputs at a time, all
    through one scheduler; ``names`` are the inputs' store names (default: the file names,
    none shared). ``on_result(index, outcome)`` hears of each input as it ends."""
    if isinstance(sources, (str, Path)):
        raise ConfigError(f"explain_detections_many takes a list of inputs, not {str(sources)!r}")
    if concurrent_inputs < 1:
        raise ConfigError(f"concurrent_inputs = {concurrent_inputs} must be >= 1")
    config = config or ExplainConfig()
    settings = settings or DetectionSettings()
    names = store_names(sources, names)
    outcomes: list[Outcome | None] = [None] * len(sources)
    limiter = anyio.CapacityLimiter(concurrent_inputs)
    started = time.perf_counter()
    with raise_first_error():
        opened = open_detector(
            backend, config, settings.layout, backend_settings, settings.max_detections
        )
        async with opened as (detector, scheduler, resolved):

            async def one(index: int) -> None:
                report = on_progress

                def progress(target: int, event: Progress) -> None:
                    if report is not None:
                        report(index, target, event)

                async with limiter:
                    try:
                        outcome: Outcome = await explain_detections_with(
                            sources[index],
                            scheduler,
                            detector,
                            resolved,
                            settings,
                            store=store,
                            resume=resume,
                            overwrite=overwrite,
                            on_progress=progress,
                            started=started,
                            name=names[index],
                        )
                    except INPUT_ERRORS as error:
                        outcome = InputFailure(str(sources[index]), error)
                if store is not None:  # the store's failure records, for reports
                    await anyio.to_thread.run_sync(note_outcome, store, names[index], outcome)
                outcomes[index] = outcome
                if on_result is not None:
                    on_result(index, outcome)

            async with anyio.create_task_group() as tasks:
                for index in range(len(sources)):
                    tasks.start_soon(one, index)
    return [o for o in outcomes if o is not None]


def store_names(sources: Sequence[str | Path], names: Sequence[str] | None) -> list[str]:
    """One store name per input, no two alike (two would write one group)."""
    if names is None:
        names = [input_name(Path(source).name) for source in sources]
    elif len(names) != len(sources):
        raise ConfigError(f"{len(names)} names for {len(sources)} inputs")
    first: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in first:
            raise ConfigError(
                f"inputs {sources[first[name]]} and {sources[index]} would share the name "
                f"{name!r}; give each its own name"
            )
        first[name] = index
    return list(names)
