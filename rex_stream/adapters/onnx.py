"""Local onnxruntime backend: an InferenceSession run in worker threads (the GIL is released)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from rex_stream.adapters.onnx_inputs import has_batch_axis, is_text_model, text_layout
from rex_stream.engine.backend import BackendSettings, ModelInfo, Outputs, score_rows
from rex_stream.errors import BackendError, ConfigError

#: On CPUs, small batches keep the working set in cache (efficientnet-lite0 on 2 cores: 190/s at
#: batch 8 with 2 single-threaded runs in flight, 178/s at 16, 137/s at 64).
CPU_PREFERRED_BATCH = 8

KNOWN_OPTIONS = {"threads", "providers", "output", "arena"}

#: From this many bytes per input, onnxruntime's CPU arena is off (``arena=auto``): the arena
#: keeps what a run freed and grows in steps, so a 512³ float32 volume through a model with one
#: full-size intermediate held 1 GiB of arena after two runs instead of 512 MiB.
LARGE_INPUT_BYTES = 64 << 20

_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


class OnnxBackend:
    """Scores batches with onnxruntime; options: ``threads``, ``providers``, ``output``,
    ``arena`` (``on``, ``off`` or ``auto``: off for inputs of :data:`LARGE_INPUT_BYTES` or more).
    """

    def __init__(self, path: Path, settings: BackendSettings) -> None:
        import onnxruntime as ort

        unknown = set(settings.options) - KNOWN_OPTIONS
        if unknown:
            raise ConfigError(
                f"unknown ONNX backend option(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(KNOWN_OPTIONS))}"
            )
        threads = settings.options.get("threads")
        if threads is not None and (not threads.isdigit() or not 1 <= int(threads) <= 4096):
            raise ConfigError(
                f"backend option threads={threads!r} must be a positive integer (at most 4096)"
            )
        options = ort.SessionOptions()
        # one session serves max_inflight concurrent runs: share the cores between them
        # rather than oversubscribe (2 runs × 2 threads on 2 cores measured 15 % slower)
        cores = os.cpu_count() or 1
        options.intra_op_num_threads = (
            int(threads) if threads else max(1, cores // max(1, settings.max_inflight))
        )
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        providers = _providers(ort, settings.options.get("providers", "CPUExecutionProvider"))
        arena = settings.options.get("arena", "auto")
        if arena not in ("on", "off", "auto"):
            raise ConfigError(f"backend option arena={arena!r} must be on, off or auto")
        options.enable_cpu_mem_arena = arena != "off"
        self._session = _open_session(ort, path, options, providers)
        if arena == "auto" and _input_bytes(self._session, settings) >= LARGE_INPUT_BYTES:
            options.enable_cpu_mem_arena = False  # the model's intermediates are input-sized
            options.enable_mem_pattern = False
            self._session = _open_session(ort, path, options, providers)
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        # strings or token ids (text models); else one numeric tensor: the buffer itself
        layout = text_layout(inputs, settings, path.name) if is_text_model(inputs) else None
        if len(inputs) != 1 and layout is None:
            names = ", ".join(i.name for i in inputs)
            raise BackendError(f"{path}: the model has {len(inputs)} inputs ({names}); need one")
        wanted_output = settings.options.get("output")
        output_names = [o.name for o in outputs]
        if wanted_output and wanted_output not in output_names:
            raise ConfigError(f"{path} has no output {wanted_output!r}; outputs: {output_names}")
        self._output = wanted_output or output_names[0]
        model_input = inputs[0]
        shape = [d if isinstance(d, int) else -1 for d in model_input.shape]
        # a model taking one picture without a batch axis: one input per call, no axis sent
        self._batched = layout is not None or has_batch_axis(shape, settings.input_shape)
        batch_dim = (shape[0] if shape else -1) if self._batched else 1
        declared = shape[1:] if self._batched else shape
        input_shape = settings.input_shape or tuple(declared)
        if layout is not None:
            input_shape, declared = layout.shape, list(layout.shape)
        elif settings.input_shape and (
            len(declared) != len(input_shape)
            or any(d > 0 and d != w for d, w in zip(declared, input_shape))
        ):
            raise ConfigError(
                f"--input-shape {','.join(map(str, input_shape))} contradicts {path.name}, "
                f"which takes {tuple('?' if d < 0 else d for d in declared)}"
            )
        output_shape = next(o.shape for o in outputs if o.name == self._output)
        classes = output_shape[-1] if output_shape and isinstance(output_shape[-1], int) else None
        dtype = _TYPES.get(model_input.type) if layout is None else layout.dtype
        if dtype is None:
            raise BackendError(f"{path}: unsupported input type {model_input.type}")
        on_cpu = self._session.get_providers()[0] == "CPUExecutionProvider"
        self._info = ModelInfo(
            name=path.name,
            input_name=model_input.name if layout is None else layout.name,
            input_shape=tuple(input_shape),
            dtype=np.dtype(dtype),
            max_batch=batch_dim if batch_dim > 0 else None,
            num_classes=classes,
            output_name=self._output,
            preferred_batch=CPU_PREFERRED_BATCH if on_cpu else None,
            in_process=True,
            identity={"kind": "onnx", "sha256": file_sha256(path), "output": self._output},
            output_names=tuple(output_names),
        )
        self._limiter = anyio.CapacityLimiter(max(1, settings.max_inflight))
        name = self._info.input_name
        self._feed = layout.feed if layout is not None else lambda batch: {name: batch}

    @property
    def info(self) -> ModelInfo:
        """Metadata read from the model file."""
        return self._info

    def infer_blocking(self, batch: np.ndarray) -> np.ndarray:
        """Score a batch in the calling thread."""
        if not self._batched:  # one input per run, each answer given a batch axis of 1
            rows = [self._run([self._output], row[None])[0][None] for row in batch]
            result = np.concatenate(rows) if rows else np.empty((0,))
        else:
            result = self._run([self._output], batch)[0]
        return score_rows(result, len(batch), self._info.name)

    def _run(self, names: list[str] | None, batch: np.ndarray) -> list[Any]:
        """One session run on ``batch`` (one input without its batch axis, for a model
        that has none)."""
        feed = self._feed(batch) if self._batched else {self._info.input_name: batch[0]}
        try:
            return list(self._session.run(names, feed))
        except Exception as exc:
            raise BackendError(
                f"onnxruntime failed on a batch of {len(batch)}: {_first_line(exc)}"
            ) from exc

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """Score a batch in a worker thread."""
        return await anyio.to_thread.run_sync(self.infer_blocking, batch, limiter=self._limiter)

    def infer_outputs_blocking(self, batch: np.ndarray) -> Outputs:
        """Every output of the model for a batch, by name, in the calling thread (a model
        without a batch axis answers each input with a batch axis of 1 added)."""
        names = self._info.output_names
        if self._batched:
            return {n: np.asarray(r) for n, r in zip(names, self._run(None, batch))}
        answers = [self._run(None, row[None]) for row in batch]
        if len(answers) != 1:
            raise BackendError(
                f"{self._info.name} takes one input per call (no batch axis); got {len(batch)}"
            )
        return {n: np.asarray(r)[None] for n, r in zip(names, answers[0])}

    async def infer_outputs(self, batch: np.ndarray) -> Outputs:
        """Every output of the model for a batch, by name, in a worker thread."""
        return await anyio.to_thread.run_sync(
            self.infer_outputs_blocking, batch, limiter=self._limiter
        )

    async def aclose(self) -> None:
        """Drop the session."""
        self._session = None


async def connect(spec: str, settings: BackendSettings) -> OnnxBackend:
    """Open ``spec`` (a path to a .onnx file) as a backend."""
    path = Path(spec)
    if not await anyio.to_thread.run_sync(path.is_file):
        raise ConfigError(f"{spec}: no such model file")
    return await anyio.to_thread.run_sync(OnnxBackend, path, settings)


def _providers(ort: Any, text: str) -> list[str]:
    """The providers asked for that this onnxruntime has, in order (a list may name a GPU
    provider first and fall back); none of them available is an error, not a silent CPU run."""
    asked = [name.strip() for name in text.split(",") if name.strip()]
    available = list(ort.get_available_providers())
    found = [name for name in asked if name in available]
    if not found:
        raise ConfigError(
            f"backend option providers={text!r}: none is available in this onnxruntime "
            f"(available: {', '.join(available)})"
        )
    return found


def _open_session(ort: Any, path: Path, options: Any, providers: list[str]) -> Any:
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise BackendError(f"{path} is not a loadable ONNX model: {_first_line(exc)}") from exc


def _input_bytes(session: Any, settings: BackendSettings) -> int:
    """Bytes of one input row, where the model or ``settings`` fix its shape (else 0)."""
    model_input = session.get_inputs()[0]
    declared = [d if isinstance(d, int) else -1 for d in model_input.shape]
    batched = has_batch_axis(declared, settings.input_shape)
    shape = settings.input_shape or tuple(declared[1:] if batched else declared)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        return 0
    dtype = _TYPES.get(model_input.type, np.float32)
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's content (the model's identity: the same name may hold another)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
