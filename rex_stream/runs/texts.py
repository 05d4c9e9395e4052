"""Many texts through one backend and one scheduler, so that their mutants share batches: a
list of strings (:func:`explain_texts`), or every row of a ``.jsonl``/``.csv``/``.tsv`` file,
one input per row (:func:`explain_text_rows`).

Each text is an input of its own, as each file of a directory is: its own store group
(``text-3`` for the fourth string, ``reviews-row3`` for the fourth row of ``reviews.jsonl``,
whose store ``source`` is ``reviews.jsonl#row=3``), its own result, and a text that cannot be
read or explained (an empty row) fails alone, as an :class:`InputFailure`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings
from rex_stream.engine.session import Engine, open_engine
from rex_stream.errors import ConfigError, InputError, OutputError, StoreError, raise_first_error
from rex_stream.modes.text_io import ROW_SUFFIXES, read_rows
from rex_stream.naming import input_name
from rex_stream.progress import Progress
from rex_stream.result import Explanation, InputFailure
from rex_stream.runs.many import note_outcome
from rex_stream.runs.rex import explain_input

__all__ = ["TextInput", "explain_text_rows", "explain_texts", "text_rows"]

#: Errors that belong to one text: it fails alone, the run goes on.
INPUT_ERRORS = (InputError, StoreError, OutputError)

Outcome = Explanation | InputFailure


@dataclass(frozen=True)
class TextInput:
    """One text of a run over many: a string, or one row of a row file."""

    #: the store group and output name
    name: str
    #: what failures and summaries call it (``reviews.jsonl#row=3``, or the name)
    label: str
    text: str | None = None
    path: Path | None = None
    row: int | None = None


def text_rows(source: str | Path, config: ExplainConfig, rows: Sequence[int] | None = None):
    """The inputs of the rows of ``source`` (default: every row) in the column the mode
    option ``column`` names (default ``text``); a missing file or column is an InputError."""
    path = Path(source)
    if path.suffix.lower() not in ROW_SUFFIXES:
        raise InputError(f"{path}: rows are read from {', '.join(ROW_SUFFIXES)} files")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    count = len(read_rows(path, config.image.mode_options.get("column", "text")))
    wanted = list(range(count)) if rows is None else [int(r) for r in rows]
    for row in wanted:
        if not 0 <= row < count:
            raise InputError(f"{path}: row {row} does not exist ({count} rows)")
    return [
        TextInput(input_name(f"{path.stem}-row{row}"), f"{path}#row={row}", path=path, row=row)
        for row in wanted
    ]


async def explain_texts(
    texts: Sequence[str],
    backend: Backend | str,
    config: ExplainConfig | None = None,
    *,
    names: Sequence[str] | None = None,
    **kwargs: object,
) -> list[Outcome]:
    """Explain many strings through one backend and one scheduler, ``concurrent_inputs`` at
    a time (``--mode text`` is implied). ``names`` are the store groups (default ``text-0``,
    ``text-1`` …); the other keywords are :func:`explain_text_inputs`'."""
    if isinstance(texts, str):
        raise ConfigError("explain_texts takes a list of strings, not one (for one: explain)")
    if not all(isinstance(text, str) for text in texts):
        raise ConfigError("explain_texts takes strings (for files: explain_many)", key="texts")
    if names is None:
        names = [f"text-{index}" for index in range(len(texts))]
    elif len(names) != len(texts):
        raise ConfigError(f"{len(names)} names for {len(texts)} texts", key="names")
    inputs = [TextInput(n, n, text=t) for n, t in zip(names, texts, strict=True)]
    return await explain_text_inputs(inputs, backend, config, **kwargs)  # type: ignore[arg-type]


async def explain_text_rows(
    source: str | Path,
    backend: Backend | str,
    config: ExplainConfig | None = None,
    rows: Sequence[int] | None = None,
    **kwargs: object,
) -> list[Outcome]:
    """Explain every row of a ``.jsonl``/``.csv``/``.tsv`` file (or the ``rows`` given) as an
    input of its own, through one backend and one scheduler; the keywords are
    :func:`explain_text_inputs`'."""
    config = _text_config(config)
    inputs = text_rows(source, config, rows)
    return await explain_text_inputs(inputs, backend, config, **kwargs)  # type: ignore[arg-type]


async def explain_text_inputs(
    inputs: Sequence[TextInput],
    backend: Backend | str,
    config: ExplainConfig | None = None,
    *,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    concurrent_inputs: int = 4,
    on_result: Callable[[Outcome], None] | None = None,
    backend_settings: BackendSettings | None = None,
    keep_results: bool = True,
    on_progress: Callable[[int, Progress], None] | None = None,
) -> list[Outcome]:
    """Explain ``inputs`` through one backend and one scheduler, ``concurrent_inputs`` at a
    time. A text that cannot be read, fit or stored fails alone (an :class:`InputFailure`);
    a backend failure ends the run. With ``keep_results=False`` each outcome goes to
    ``on_result`` and is released (the list returned is empty); ``on_progress(index, event)``
    receives each text's progress snapshots."""
    if concurrent_inputs < 1:
        raise ConfigError(f"concurrent_inputs = {concurrent_inputs} must be >= 1")
    _check_distinct(inputs, distinct=store is not None)
    config = _text_config(config)
    results: list[Outcome | None] = [None] * len(inputs)
    limiter = anyio.CapacityLimiter(concurrent_inputs)

    async def one(index: int, engine: Engine) -> None:
        item = inputs[index]
        async with limiter:
            try:
                outcome: Outcome = await explain_input(
                    np.array(item.text) if item.path is None else item.path,
                    engine.info,
                    engine.scheduler,
                    _row_config(engine.config, item.row),
                    store=store,
                    resume=resume,
                    overwrite=overwrite,
                    name=item.name,
                    on_progress=_tagged(on_progress, index),
                )
            except INPUT_ERRORS as error:
                outcome = InputFailure(item.label, error)
        if store is not None:  # the store's failure records, for reports
            await anyio.to_thread.run_sync(note_outcome, store, item.name, outcome)
        if keep_results:
            results[index] = outcome
        if on_result is not None:
            on_result(outcome)

    with raise_first_error():
        async with open_engine(backend, config, backend_settings) as engine:
            async with anyio.create_task_group() as group:
                for index in range(len(inputs)):
                    group.start_soon(one, index, engine)
    return [r for r in results if r is not None]


def _text_config(config: ExplainConfig | None) -> ExplainConfig:
    """``config`` in text mode (another mode is a mistake)."""
    config = config or ExplainConfig()
    mode = config.image.mode
    if mode not in (None, "text"):
        raise ConfigError(f"texts are explained in the text mode, not {mode!r}", key="mode")
    return replace(config, image=replace(config.image, mode="text"))


def _row_config(config: ExplainConfig, row: int | None) -> ExplainConfig:
    """``config`` reading row ``row`` of a row file (unchanged for a string)."""
    if row is None:
        return config
    options = {**config.image.mode_options, "row": str(row)}
    return replace(config, image=replace(config.image, mode_options=options))


def _tagged(
    on_progress: Callable[[int, Progress], None] | None, index: int
) -> Callable[[Progress], None] | None:
    """One text's progress callback, tagged with its index."""
    if on_progress is None:
        return None
    report = on_progress

    def forward(event: Progress) -> None:
        report(index, event)

    return forward


def _check_distinct(inputs: Sequence[TextInput], *, distinct: bool) -> None:
    """Two texts may not share a store group."""
    first: dict[str, str] = {}
    for item in inputs if distinct else ():
        if item.name in first:
            raise ConfigError(
                f"texts {first[item.name]} and {item.label} would share the store name "
                f"{item.name!r}; give each its own name (names=…)",
                key="names",
            )
        first[item.name] = item.label
