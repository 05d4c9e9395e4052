"""Python-callable backend: any sync or async ``f(batch) -> scores`` serves as a model.

From the CLI: ``--backend python:package.module:function``; the input shape (no batch axis)
comes from ``--input-shape`` or the module's ``input_shape`` attribute (the module is looked
up in the current directory first, as ``python -m`` does), and an optional
``max_batch`` attribute caps the batch and ``output_names`` names the arrays of a function
that returns several (a tuple). Sync functions run in a worker thread.

A function that takes text (``input_type = "text"`` in its module, ``--mode text`` without an
input shape, or ``PythonBackend(f, (1,), dtype=object)``) receives a ``list`` of ``str``.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np

from rex_stream.engine.backend import (
    BackendSettings,
    ModelInfo,
    Outputs,
    named_outputs,
    score_rows,
)
from rex_stream.engine.inputs import ROW_SHAPE, TEXT_DTYPE, is_text, text_rows
from rex_stream.engine.user_modules import import_from_cwd_first
from rex_stream.errors import BackendError, ConfigError, RexStreamError

ScoreFunction = Callable[[np.ndarray], Any]


class PythonBackend:
    """Wraps a Python function; usable directly from the library API."""

    def __init__(
        self,
        function: ScoreFunction,
        input_shape: tuple[int, ...],
        *,
        name: str | None = None,
        dtype: np.dtype | type = np.float32,
        max_batch: int | None = None,
        max_inflight: int = 2,
        output_names: tuple[str, ...] = (),
    ) -> None:
        self._function = function
        self._is_async = inspect.iscoroutinefunction(function) or (
            not inspect.isfunction(function)
            and inspect.iscoroutinefunction(type(function).__call__)
        )
        self._text = is_text(np.dtype(dtype))
        self._info = ModelInfo(
            name=name or str(getattr(function, "__name__", "python")),
            input_name="input",
            input_shape=ROW_SHAPE if self._text else tuple(int(d) for d in input_shape),
            dtype=np.dtype(dtype),
            max_batch=max_batch,
            preferred_inflight=max_inflight,
            in_process=True,
            identity={"kind": "python", "function": _qualified_name(function)},
            output_names=tuple(output_names),
        )
        self._limiter = anyio.CapacityLimiter(max(1, max_inflight))

    @property
    def info(self) -> ModelInfo:
        """Metadata given at construction."""
        return self._info

    def follow_inflight(self, calls: int) -> None:
        """Run up to ``calls`` sync calls at once (the scheduler's in-flight window)."""
        self._limiter.total_tokens = max(1, calls)

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """Call the function (awaited if async, else in a worker thread)."""
        return score_rows(await self._call(batch), len(batch), self._info.name)

    async def infer_outputs(self, batch: np.ndarray) -> Outputs:
        """Call the function; its answer as named outputs (a dict of arrays as it is, a tuple
        named by ``output_names``, one array as ``output``)."""
        result = await self._call(batch)
        return named_outputs(result, self._info.output_names, self._info.name)

    async def _call(self, batch: np.ndarray) -> Any:
        given: Any = text_rows(batch) if self._text else batch  # a text function gets str
        try:
            if self._is_async:
                result = await self._function(given)
            else:
                result = await anyio.to_thread.run_sync(
                    self._function, given, limiter=self._limiter
                )
        except RexStreamError:
            raise
        except Exception as exc:  # the user's function failed: one line naming it
            message = str(exc).splitlines()[0] if str(exc) else ""
            raise BackendError(
                f"{self._info.name} raised {type(exc).__name__} on a batch of {len(batch)}"
                + (f": {message}" if message else "")
            ) from exc
        return result

    async def aclose(self) -> None:
        """Nothing to release."""


def _qualified_name(function: ScoreFunction) -> str:
    """``module:qualified.name`` of a function (or of a callable object's class)."""
    named = function if hasattr(function, "__qualname__") else type(function)
    module = getattr(named, "__module__", None) or "?"
    if module == "__main__":  # python -m package.module: name it as an import would
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = spec.name if spec is not None else module
    return f"{module}:{getattr(named, '__qualname__', repr(named))}"


async def connect(spec: str, settings: BackendSettings) -> PythonBackend:
    """Import ``python:module:function`` and wrap the function."""
    if settings.options:
        names = ", ".join(sorted(settings.options))
        raise ConfigError(f"the python backend takes no options (got {names})")
    target = spec.removeprefix("python:")
    module_name, _, attribute = target.rpartition(":")
    if not module_name or not attribute:
        raise ConfigError(f"{spec!r}: expected python:package.module:function")
    try:
        module = import_from_cwd_first(module_name)
    except ImportError as exc:
        raise ConfigError(f"{spec!r}: cannot import {module_name} ({exc})") from exc
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ConfigError(f"{spec!r}: {module_name} has no function {attribute!r}")
    if getattr(module, "input_type", None) == "text" or (
        settings.text_input and settings.input_shape is None
    ):
        return PythonBackend(
            function,
            ROW_SHAPE,
            name=f"{module_name}:{attribute}",
            dtype=TEXT_DTYPE,
            max_batch=getattr(module, "max_batch", None),
            max_inflight=settings.max_inflight,
        )
    shape = settings.input_shape or getattr(module, "input_shape", None)
    if shape is None:
        raise ConfigError(
            f"{spec!r}: the input shape is unknown; pass --input-shape C,H,W or define "
            f"input_shape in {module_name}"
        )
    return PythonBackend(
        function,
        tuple(shape),
        name=f"{module_name}:{attribute}",
        max_batch=getattr(module, "max_batch", None),
        max_inflight=settings.max_inflight,
        output_names=tuple(getattr(module, "output_names", ())),
    )
