"""The backend port: what the core needs from any model server, and how specs find adapters.

A backend is three things (the shape of httpx's transport): ``info`` (model metadata),
``async infer(batch) -> scores`` and ``async aclose()``. A backend that can also give every
named output tensor of its model (a detector's boxes, scores and classes) implements
:class:`OutputsBackend`: ``async infer_outputs(batch) -> {name: array}``. Adapters live in
``rex_stream.adapters`` and are discovered through the entry-point group
``rex_stream.backends``; the core never imports one.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rex_stream.engine.install_hint import install_command
from rex_stream.errors import BackendError, ConfigError

ENTRY_POINT_GROUP = "rex_stream.backends"
#: The pip extra that brings each bundled network adapter's client library.
EXTRAS = {"triton": "triton", "triton+http": "triton", "http": "http", "https": "http"}


@dataclass(frozen=True)
class ModelInfo:
    """Metadata of the model behind a backend.

    ``input_shape`` excludes the batch axis; ``dtype`` is the batch buffer's: a number type,
    ``object`` (rows of strings) or a structured dtype of named tensors (token ids and masks;
    see :mod:`rex_stream.engine.inputs`). ``max_batch`` is the largest batch one call may
    carry (``None``: no limit; ``1``: the model takes one input per call).
    ``preferred_batch`` is the batch size the adapter knows to be fastest, if any, and
    ``preferred_inflight`` how many concurrent calls suit it. ``in_process``: the model runs
    in this process, so its memory per row counts against the run's memory budget.
    ``identity`` says which model
    this is, as plain JSON values (an ONNX file's content hash; a server's URL, model name,
    version and metadata; a Python function's ``module:function``): a store refuses to resume
    a run made with another.
    """

    name: str
    input_name: str
    input_shape: tuple[int, ...]
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    max_batch: int | None = None
    num_classes: int | None = None
    output_name: str | None = None
    preferred_batch: int | None = None
    preferred_inflight: int | None = None
    #: the model runs inside this process (its memory counts against the run's budget)
    in_process: bool = False
    #: which model this is (a store refuses to resume a run made with another)
    identity: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: every output the model has, in its order (``infer_outputs`` answers with these)
    output_names: tuple[str, ...] = ()


@runtime_checkable
class Backend(Protocol):
    """A model that scores batches of inputs: ``(n, *input_shape) -> (n, num_classes)``."""

    @property
    def info(self) -> ModelInfo:
        """Metadata of the served model."""
        ...

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """Score one batch; returns a float array with one row per input."""
        ...

    async def aclose(self) -> None:
        """Release connections, sessions and threads."""
        ...


#: An answer as named output tensors, each with the batch axis first where the model has one.
Outputs = dict[str, np.ndarray]


@runtime_checkable
class OutputsBackend(Protocol):
    """A backend that can answer with every named output of its model, as the model gives
    them (no reshaping into score rows): what a target that reads more than one class-score
    row per input (a detector's boxes, scores and classes) needs."""

    @property
    def info(self) -> ModelInfo:
        """Metadata of the served model (``output_names`` lists the outputs)."""
        ...

    async def infer_outputs(self, batch: np.ndarray) -> Outputs:
        """Run one batch; every output of the model by name."""
        ...


@dataclass(frozen=True)
class BackendSettings:
    """Knobs shared by all adapters; adapter-specific ones go in ``options`` (``key=value``)."""

    timeout_s: float = 60.0
    max_inflight: int = 2
    input_shape: tuple[int, ...] | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    #: a backend that cannot describe its input (python:, row JSON) takes strings
    text_input: bool = False
    #: the run reads several named outputs (``infer_outputs``): an adapter must not insist
    #: on choosing one output that holds class scores
    all_outputs: bool = False

    def __post_init__(self) -> None:
        if not (self.timeout_s > 0 and self.timeout_s != float("inf")):  # NaN fails too
            raise ConfigError(
                f"timeout_s = {self.timeout_s!r}: the deadline of each backend call must be a "
                "positive number of seconds"
            )


#: Concurrent calls when the user sets none: enough to hide a network round trip, or to keep
#: a local CPU busy without oversubscribing it.
NETWORK_INFLIGHT = 8
LOCAL_INFLIGHT = 2
NETWORK_KINDS = ("triton", "triton+http", "http", "https")


def default_inflight(backend: Backend | str) -> int:
    """How many calls to keep in flight for this backend when the user did not say."""
    if isinstance(backend, str):
        return NETWORK_INFLIGHT if backend_kind(backend) in NETWORK_KINDS else LOCAL_INFLIGHT
    return backend.info.preferred_inflight or LOCAL_INFLIGHT


BackendFactory = Callable[[str, BackendSettings], Awaitable[Backend]]


def backend_kind(spec: str) -> str:
    """Name the adapter a spec asks for: ``model.onnx`` → onnx, ``triton://…`` → triton, …"""
    if "://" in spec:
        return spec.split("://", 1)[0].lower()
    if spec.startswith("python:"):
        return "python"
    if spec.lower().endswith(".onnx") or Path(spec).is_file():
        return "onnx"
    raise ConfigError(
        f"cannot tell which backend {spec!r} means: give a .onnx file, triton://host:port/model, "
        "triton+http://…, http(s)://… or python:module:function"
    )


def available_backends() -> dict[str, importlib.metadata.EntryPoint]:
    """The adapters installed in this environment, by spec scheme."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


async def open_backend(spec: str, settings: BackendSettings | None = None) -> Backend:
    """Open the backend a spec names, through the adapter registered for its scheme."""
    kind = backend_kind(spec)
    adapters = available_backends()
    if kind not in adapters:
        known = ", ".join(sorted(adapters)) or "none"
        extra = EXTRAS.get(kind)
        hint = f"; install it with {install_command(extra)}" if extra else ""
        raise ConfigError(
            f"no backend adapter for {kind!r} (spec {spec!r}); installed adapters: {known}{hint}"
        )
    try:
        factory: BackendFactory = adapters[kind].load()
    except ImportError as exc:
        extra = EXTRAS.get(kind, kind)
        raise ConfigError(
            f"the {kind!r} backend needs a package that is not installed ({exc.name or exc}); "
            f"try {install_command(extra)}"
        ) from exc
    backend = await factory(spec, settings or BackendSettings())
    if not isinstance(backend, Backend):
        raise BackendError(f"the {kind!r} adapter returned {type(backend).__name__}, not a Backend")
    return backend


def score_rows(result: Any, rows: int, source: str) -> np.ndarray:
    """A model's answer to ``rows`` inputs as a ``(rows, classes)`` float64 array.

    A flat answer of ``rows × classes`` values is split into rows; a shaped one must have
    ``rows`` first and at most one further axis longer than 1 (``(N, 1, C)`` is fine,
    ``(N, C, 2)`` is not: flattening it would invent classes). Anything else is a
    :class:`BackendError` naming ``source``.
    """
    try:
        scores = np.asarray(result, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BackendError(
            f"{source} returned {type(result).__name__} that is not {rows} rows of scores"
        ) from exc
    if scores.ndim >= 2:
        long_axes = [d for d in scores.shape[1:] if d > 1]
        if scores.shape[0] != rows or len(long_axes) > 1:
            raise BackendError(
                f"{source} returned scores of shape {scores.shape} for {rows} inputs: expected "
                f"({rows}, classes)"
            )
    elif rows == 0 or scores.size % rows:
        raise BackendError(
            f"{source} returned {type(result).__name__} that is not {rows} rows of scores"
        )
    return scores.reshape(rows, -1)


def named_outputs(result: Any, names: tuple[str, ...], source: str) -> Outputs:
    """A Python model's answer as named outputs: a mapping as it is, a tuple or list of
    arrays named by ``names`` (``output0``, ``output1`` … where none are given), one array
    as ``names[0]`` (``output``)."""
    if isinstance(result, Mapping):
        return {str(k): np.asarray(v) for k, v in result.items()}
    if (
        isinstance(result, (tuple, list))
        and result
        and all(isinstance(v, np.ndarray) for v in result)
    ):
        labels = names if len(names) == len(result) else [f"output{i}" for i in range(len(result))]
        return {str(k): np.asarray(v) for k, v in zip(labels, result)}
    try:
        return {names[0] if names else "output": np.asarray(result)}
    except (TypeError, ValueError) as exc:
        raise BackendError(f"{source} returned {type(result).__name__}, not arrays") from exc
