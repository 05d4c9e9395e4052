"""The blocking API: one line per entry point over :func:`_block`.

Each function runs its asynchronous twin (:mod:`rex_stream.api.asynchronous`) in an event
loop of its own and raises the library's own errors (:class:`~rex_stream.InputError`,
:class:`~rex_stream.BackendError`, …), never an exception group.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import numpy as np

from rex_stream.api import asynchronous
from rex_stream.cem import CemConfig, CemResult
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend
from rex_stream.errors import raise_first_error
from rex_stream.evaluation.detection import DetectionEvaluation
from rex_stream.evaluation.meta.input_test import MetaEvaluation
from rex_stream.evaluation.meta.model_test import ModelMetaEvaluation
from rex_stream.evaluation.report import Evaluation
from rex_stream.l2x import Explainer
from rex_stream.result import Explanation, InputFailure
from rex_stream.runs.detect import DetectionResult
from rex_stream.runs.l2x import L2xResult

if TYPE_CHECKING:
    from rex_stream.distributed.driver import InputSummary

__all__ = [
    "evaluate_sync",
    "explain_cem_sync",
    "explain_l2x_sync",
    "explain_many_sync",
    "explain_rows_sync",
    "explain_sync",
    "explain_text_rows_sync",
    "explain_texts_sync",
    "meta_evaluate_model_sync",
    "meta_evaluate_sync",
    "train_l2x_sync",
]

Result = TypeVar("Result")
Source = str | Path | np.ndarray


def _block(function: Callable[..., Awaitable[Result]], *args: Any, **kwargs: Any) -> Result:
    """Run ``function(*args, **kwargs)`` to its end in a new event loop; an exception group
    from the task groups inside is unwrapped into its telling error."""
    with raise_first_error():
        return anyio.run(partial(function, *args, **kwargs))


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
    """Blocking :func:`~rex_stream.explain`; flat ``overrides`` (``iters=5``…) adjust
    ``config``."""
    config = (config or ExplainConfig()).with_overrides(**overrides)
    return _block(
        asynchronous.explain,
        source,
        backend,
        config,
        store=store,
        resume=resume,
        overwrite=overwrite,
    )


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
    """Blocking :func:`~rex_stream.explain_many`: every input through one scheduler, or on
    the Dask cluster behind ``client``; flat ``overrides`` (``iters=5``…) adjust ``config``."""
    config = (config or ExplainConfig()).with_overrides(**overrides)
    return _block(
        asynchronous.explain_many,
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


def explain_texts_sync(
    texts: Sequence[str],
    backend: Backend | str,
    config: ExplainConfig | None = None,
    *,
    names: Sequence[str] | None = None,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    concurrent_inputs: int = 4,
    **overrides: Any,
) -> list[Explanation | InputFailure]:
    """Blocking :func:`~rex_stream.runs.texts.explain_texts`: many strings through one
    scheduler, each its own input; flat ``overrides`` (``iters=5``…) adjust ``config``."""
    config = (config or ExplainConfig()).with_overrides(**overrides)
    return _block(
        asynchronous.explain_texts, texts, backend, config, names=names, store=store,
        resume=resume, overwrite=overwrite, concurrent_inputs=concurrent_inputs,
    )  # fmt: skip


def explain_text_rows_sync(
    source: str | Path,
    backend: Backend | str,
    config: ExplainConfig | None = None,
    rows: Sequence[int] | None = None,
    *,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    concurrent_inputs: int = 4,
    **overrides: Any,
) -> list[Explanation | InputFailure]:
    """Blocking :func:`~rex_stream.runs.texts.explain_text_rows`: every row of a
    ``.jsonl``/``.csv``/``.tsv`` file (or ``rows``), each its own input; flat ``overrides``
    adjust ``config``."""
    config = (config or ExplainConfig()).with_overrides(**overrides)
    return _block(
        asynchronous.explain_text_rows, source, backend, config, rows, store=store,
        resume=resume, overwrite=overwrite, concurrent_inputs=concurrent_inputs,
    )  # fmt: skip


def explain_rows_sync(
    source: str | Path,
    backend: Backend | str,
    config: ExplainConfig | None = None,
    rows: Sequence[int] | None = None,
    **overrides: Any,
) -> list[Explanation]:
    """Blocking :func:`~rex_stream.runs.rows.explain_rows`: several rows of one table
    (default: all) through one engine; flat ``overrides`` (``iters=5``…) adjust ``config``."""
    config = (config or ExplainConfig()).with_overrides(**overrides)
    return _block(asynchronous.explain_rows, source, backend, config, rows)


def explain_cem_sync(
    sources: Source | Sequence[Source],
    backend: Backend | str,
    cem: CemConfig | None = None,
    config: ExplainConfig | None = None,
    **kwargs: Any,
) -> list[CemResult]:
    """Blocking :func:`~rex_stream.explain_cem`."""
    return _block(asynchronous.explain_cem, sources, backend, cem, config, **kwargs)


def train_l2x_sync(data: Source, backend: Backend | str, *args: Any, **kwargs: Any) -> Explainer:
    """Blocking :func:`~rex_stream.train_l2x`."""
    return _block(asynchronous.train_l2x, data, backend, *args, **kwargs)


def explain_l2x_sync(
    source: Source, explainer: Explainer | str | Path, *args: Any, **kwargs: Any
) -> L2xResult:
    """Blocking :func:`~rex_stream.explain_l2x`."""
    return _block(asynchronous.explain_l2x, source, explainer, *args, **kwargs)


def explain_detections_sync(*args: Any, **kwargs: Any) -> DetectionResult:
    """Blocking :func:`~rex_stream.explain_detections`."""
    return _block(asynchronous.explain_detections, *args, **kwargs)


def explain_detections_many_sync(
    *args: Any, **kwargs: Any
) -> list[DetectionResult | InputFailure | InputSummary]:
    """Blocking :func:`~rex_stream.explain_detections_many` (one process, or the Dask cluster
    behind ``client=``)."""
    return _block(asynchronous.explain_detections_many, *args, **kwargs)


def evaluate_detections_sync(*args: Any, **kwargs: Any) -> DetectionEvaluation:
    """Blocking :func:`~rex_stream.evaluate_detections`."""
    return _block(asynchronous.evaluate_detections, *args, **kwargs)


def evaluate_sync(*args: Any, **kwargs: Any) -> Evaluation:
    """Blocking :func:`~rex_stream.evaluate`."""
    return _block(asynchronous.evaluate, *args, **kwargs)


def meta_evaluate_sync(*args: Any, **kwargs: Any) -> MetaEvaluation:
    """Blocking :func:`~rex_stream.meta_evaluate`."""
    return _block(asynchronous.meta_evaluate, *args, **kwargs)


def meta_evaluate_model_sync(*args: Any, **kwargs: Any) -> ModelMetaEvaluation:
    """Blocking :func:`~rex_stream.meta_evaluate_model`."""
    return _block(asynchronous.meta_evaluate_model, *args, **kwargs)
