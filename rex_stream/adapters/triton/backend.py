"""The Triton backend: a model on a Triton Inference Server, scored batch by batch.

Batches are split to the model's ``max_batch_size`` (one input per call without batching) and
the parts sent concurrently, each through a shared-memory slot when the pool has one, else in the
request itself. See the package doc for the spec and options.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import anyio
import numpy as np

from rex_stream.adapters.triton.client import TritonClient
from rex_stream.adapters.triton.model import ServedModel, read_model
from rex_stream.adapters.triton.options import TritonOptions
from rex_stream.adapters.triton.shm import SharedMemoryPool, Slot
from rex_stream.adapters.triton.spec import TritonTarget, parse_spec
from rex_stream.engine.backend import BackendSettings, ModelInfo, Outputs
from rex_stream.engine.inputs import is_named, is_text, named_inputs, text_bytes
from rex_stream.errors import (
    BackendError,
    BackendTimeout,
    ConfigError,
    InputError,
    TransientBackendError,
)

__all__ = ["TritonBackend", "connect"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: What Triton says while a model is being unloaded or reloaded (a restart, a repository poll).
MODEL_RELOADING = ("unknown model", "has no available versions", "is not ready")


class TritonBackend:
    """A model on a Triton Inference Server, scored over gRPC or HTTP (see the package doc)."""

    def __init__(self, client: TritonClient, max_inflight: int) -> None:
        self._client = client
        self._model: ServedModel | None = None
        self._limiter = anyio.CapacityLimiter(max(max_inflight, 1))
        self._max_inflight = max(max_inflight, 1)
        self.shared_memory = SharedMemoryPool(client)
        self._closed = False

    def __repr__(self) -> str:
        return f"TritonBackend({self.target})"

    @property
    def info(self) -> ModelInfo:
        """Metadata of the served model."""
        return self._served.info

    @property
    def _served(self) -> ServedModel:
        if self._model is None:
            raise BackendError(f"{self.target}: not connected")
        return self._model

    def follow_inflight(self, calls: int) -> None:
        """Allow ``calls`` requests at once (the scheduler's in-flight window); the HTTP
        connection pool and the gRPC channel open what that needs."""
        self._limiter.total_tokens = max(1, calls)

    @property
    def layout(self) -> str | None:
        """The model's input layout from its config: ``NCHW``, ``NHWC`` or None."""
        return self._model.layout if self._model is not None else None

    @property
    def target(self) -> TritonTarget:
        """The server address, protocol and model."""
        return self._client.target

    @property
    def uses_shared_memory(self) -> bool:
        """Whether tensors travel through system shared memory."""
        return self.shared_memory.active

    async def open(self, settings: BackendSettings, options: TritonOptions) -> None:
        """Check the server and read the model; cap replies; set up shared memory if asked."""
        self._model = await read_model(
            self._client, settings.input_shape, options.output, settings.all_outputs
        )
        await self._client.cap_replies(self._model.info)  # now that the scores' size is known
        if options.shared_memory:
            await self.shared_memory.open(self._model, self._max_inflight)

    # ---------------------------------------------------------------- inference

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """Score a batch; splits it to respect ``max_batch`` (one by one without batching)."""
        info = self.info
        batch = np.asarray(batch)
        if batch.ndim != len(info.input_shape) + 1 or batch.shape[1:] != info.input_shape:
            raise InputError(
                f"{self.target}: batch of shape {batch.shape} does not fit the model input "
                f"(n, {', '.join(map(str, info.input_shape))})"
            )
        if batch.dtype != info.dtype:
            if not np.can_cast(batch.dtype, info.dtype, casting="same_kind"):
                raise InputError(
                    f"{self.target}: batch dtype {batch.dtype} cannot be sent as the model's "
                    f"{self._served.datatype}"
                )
            batch = batch.astype(info.dtype)
        n = batch.shape[0]
        step = info.max_batch or max(n, 1)
        if n <= step:
            return await self._infer_limited(batch)
        parts: list[np.ndarray | None] = [None] * math.ceil(n / step)

        async def run(i: int) -> None:
            parts[i] = await self._infer_limited(batch[i * step : (i + 1) * step])

        async with anyio.create_task_group() as group:
            for i in range(len(parts)):
                group.start_soon(run, i)
        return np.concatenate([p for p in parts if p is not None])

    async def infer_outputs(self, batch: np.ndarray) -> Outputs:
        """Every output of the model for one batch (one request; through a shared-memory
        slot when the pool has one, else in the request itself), by name, as the server
        shapes it; the caller keeps batches within ``info.max_batch``."""
        batch = np.asarray(batch, dtype=self.info.dtype)
        async with self._limiter:
            slot = await self._free_slot(batch)
            if slot is None:
                requested = [self._client.requested_output(n) for n in self.info.output_names]
                result = await self._send(batch, self._inputs(batch), requested)
                return self._named(result)

            def into_regions() -> list[Any]:
                requested = []
                for region in slot.outputs:
                    output = self._client.requested_output(region.tensor)
                    output.set_shared_memory(region.name, region.size)
                    requested.append(output)
                return requested

            return await self._through_slot(
                slot, batch, into_regions, lambda: self._read_outputs(slot, batch.shape[0])
            )

    async def _free_slot(self, batch: np.ndarray) -> Slot | None:
        """A shared-memory slot for ``batch`` when the pool has a free one (BYTES and token ids
        travel in the request: their regions would be per tensor), else None."""
        if not self.shared_memory.active or is_text(batch.dtype) or is_named(batch.dtype):
            return None
        return await self.shared_memory.take()

    async def _through_slot(
        self,
        slot: Slot,
        batch: np.ndarray,
        requested: Callable[[], Any],
        read: Callable[[], T],
    ) -> T:
        """One request whose input travels in ``slot``'s region and whose outputs
        (``requested()``, each pointed at its region) come back in the slot, read by
        ``read()`` before the slot is given back."""
        answered = False  # the server replied: it no longer uses the slot's regions
        try:
            model_input, _ = self._tensors(batch, None)
            data = np.ascontiguousarray(batch)
            slot.write_input(data)
            model_input.set_shared_memory(slot.input_name, data.nbytes)
            try:
                await self._send(batch, [model_input], requested())
            except (TransientBackendError, BackendTimeout):
                raise
            except BackendError as exc:
                answered = True
                await self._after_shared_failure(exc)
            answered = True
            return read()
        finally:
            # A request abandoned without a reply may still run on the server and write the
            # output regions later: never lend that slot until the server is done.
            self.shared_memory.give_back(slot, answered)

    def _named(self, result: Any) -> Outputs:
        found: Outputs = {}
        for name in self.info.output_names:
            array = result.as_numpy(name)
            if array is None:
                raise BackendError(f"{self.target}: the response lacks output {name}")
            found[name] = array
        return found

    def _read_outputs(self, slot: Slot, rows: int) -> Outputs:
        """Every output of a request from its slot's regions, shaped as the server declares
        them (a batch axis of ``rows`` where the model has one)."""
        model = self._served
        tensors = {o.name: o for o in model.outputs}
        found: Outputs = {}
        for region in slot.outputs:
            tensor = tensors[region.tensor]
            shape = [rows, *tensor.dims] if model.batch_axis else list(tensor.dims)
            found[region.tensor] = region.read(tensor.dtype, shape)
        return found

    async def _after_shared_failure(self, exc: BackendError) -> NoReturn:
        """A request through shared memory failed on the server: a server that forgot the
        regions (restarted) gets them again and the request is retried; else ``exc``."""
        if "shared memory region" not in str(exc).lower():
            raise exc
        await self.shared_memory.reregister()
        raise TransientBackendError(f"{exc} (registered the regions again)") from exc

    async def _infer_limited(self, batch: np.ndarray) -> np.ndarray:
        async with self._limiter:
            slot = await self._free_slot(batch)
            if slot is None:
                return await self._infer_socket(batch)
            classes = self.info.num_classes or 0

            def into_region() -> Any:
                output = self._client.requested_output(str(self.info.output_name))
                item = self._served.output_dtype.itemsize
                output.set_shared_memory(slot.output_name, batch.shape[0] * classes * item)
                return output

            def scores() -> np.ndarray:
                shape = [batch.shape[0], classes]
                return self._scores(slot.read_output(self._served.output_dtype, shape), len(batch))

            return await self._through_slot(slot, batch, into_region, scores)

    def _tensors(self, batch: np.ndarray, data: np.ndarray | None) -> tuple[Any, Any]:
        model = self._served
        shape = list(batch.shape) if model.batch_axis else list(batch.shape[1:])
        return self._client.tensors(model.info, model.datatype, shape, data)

    def _inputs(self, batch: np.ndarray) -> list[Any]:
        """The request's inputs, data included: token ids as one tensor per field, strings
        as BYTES (UTF-8 elements), numbers as they are."""
        batched = self._served.batch_axis
        if is_named(batch.dtype):
            arrays = named_inputs(batch)
            return self._client.named_tensors(
                {name: array if batched else array[0] for name, array in arrays.items()}
            )
        sent = text_bytes(batch) if is_text(batch.dtype) else batch
        data = np.ascontiguousarray(sent if batched else sent[0])
        model_input, _ = self._tensors(batch, data)
        return [model_input]

    async def _send(self, batch: np.ndarray, model_inputs: list[Any], output: Any) -> Any:
        """One inference request for ``output`` (a requested output, or a list of them)."""
        t = self.target
        outputs = output if isinstance(output, list) else [output]
        try:
            return await self._client.call(
                f"inference on a batch of {batch.shape[0]}", "infer",
                t.model, model_inputs, model_version=t.version, outputs=outputs,
            )  # fmt: skip
        except (TransientBackendError, BackendTimeout):
            raise
        except BackendError as exc:
            # The model was ready when we connected: now missing means unloading or reloading.
            if any(phrase in str(exc) for phrase in MODEL_RELOADING):
                raise TransientBackendError(str(exc)) from exc
            raise

    async def _infer_socket(self, batch: np.ndarray) -> np.ndarray:
        output = self._client.requested_output(str(self.info.output_name))
        result = await self._send(batch, self._inputs(batch), output)
        scores = result.as_numpy(self.info.output_name)
        if scores is None:
            raise BackendError(f"{self.target}: the response lacks output {self.info.output_name}")
        return self._scores(scores, batch.shape[0])

    def _scores(self, scores: np.ndarray, n: int) -> np.ndarray:
        if scores.size % max(n, 1) != 0 or (n and scores.size == 0):
            raise BackendError(
                f"{self.target}: output {self.info.output_name} has shape {scores.shape}, "
                f"which does not split into {n} rows"
            )
        return scores.reshape(n, -1)

    async def aclose(self) -> None:
        """Unregister shared memory and close the client; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.shared_memory.release()
        finally:
            await self._client.close()


async def connect(spec: str, settings: BackendSettings) -> TritonBackend:
    """Open ``triton://…`` (gRPC) or ``triton+http://…`` (HTTP); check the model, read config."""
    target, query_options = parse_spec(spec)
    options = TritonOptions.parse(target, {**query_options, **dict(settings.options)})
    if settings.timeout_s <= 0 or settings.max_inflight < 1:
        raise ConfigError("timeout_s must be > 0 and max_inflight >= 1")
    backend = TritonBackend(TritonClient(target, options, settings), settings.max_inflight)
    try:
        await backend.open(settings, options)
    except BaseException:
        await backend.aclose()
        raise
    info = backend.info
    logger.info(
        "connected to %s: input %s %s %s, output %s (%s classes), max batch %s%s",
        target, info.input_name, info.input_shape, info.dtype, info.output_name,
        info.num_classes, info.max_batch, ", system shared memory" if options.shared_memory
        else "",
    )  # fmt: skip
    return backend
