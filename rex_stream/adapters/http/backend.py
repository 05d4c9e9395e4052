"""The HTTP backend: a model behind an ``http(s)://`` URL, scored batch by batch.

Batches are split to the model's batch limit; a 413 (or a "batch too large" reply) halves the
limit and retries, and the smaller limit sticks, for score rows and for the named outputs of a
multi-output model alike (those are joined along their batch axis). Every batch of scores is
checked (shape, class count, finite values) before it reaches a method.
See the package doc for the options.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
from yarl import URL

from rex_stream.adapters.http.metadata import plain_model, read_v2_model, unknown_model
from rex_stream.adapters.http.options import HttpOptions
from rex_stream.adapters.http.protocols import Codec, ReplyError, RowsCodec
from rex_stream.adapters.http.replies import BatchTooLarge, undecodable
from rex_stream.adapters.http.transport import Body, HttpTransport, reply_limit
from rex_stream.adapters.http.v2 import V2Codec
from rex_stream.adapters.security import public_url
from rex_stream.engine.backend import Backend, BackendSettings, ModelInfo, Outputs
from rex_stream.errors import BackendError, ConfigError

__all__ = ["HttpBackend", "connect", "join_outputs"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def join_outputs(parts: list[Outputs], where: str) -> Outputs:
    """The named outputs of consecutive parts of one batch, joined along the batch axis
    (an output without one, or of another shape per part, cannot be joined: one line)."""
    joined: Outputs = {}
    for name in parts[0]:
        arrays = [np.asarray(part[name]) for part in parts]
        if any(a.ndim == 0 or a.shape[1:] != arrays[0].shape[1:] for a in arrays):
            shapes = ", ".join(str(a.shape) for a in arrays)
            raise BackendError(
                f"{where}: output {name} of a split batch has shapes {shapes}, which do not "
                "join along a batch axis; send one input per request (option max_batch=1)"
            )
        joined[name] = np.concatenate(arrays)
    return joined


class HttpBackend:
    """A model behind an HTTP endpoint; one aiohttp session, as many requests at once as the
    scheduler's in-flight window allows."""

    def __init__(self, transport: HttpTransport) -> None:
        self.transport = transport
        self._infer_url = transport.url
        self._codec: Codec = RowsCodec()
        self._protocol = "rows"
        self._info = unknown_model(transport.url)

    @property
    def info(self) -> ModelInfo:
        """Metadata of the served model; ``max_batch`` shrinks after a 413."""
        return self._info

    @property
    def protocol(self) -> str:
        """The wire format in use: ``v2-json``, ``v2-binary``, ``rows`` or ``custom``."""
        return self._protocol

    @property
    def where(self) -> str:
        """The endpoint, safe to show in messages."""
        return public_url(self.transport.url)

    async def setup(self, settings: BackendSettings) -> None:
        """Learn the model: v2 metadata from the server, or the settings for rows/custom."""
        if self.transport.options.protocol.startswith("v2"):
            served = await read_v2_model(self.transport, settings)
        else:
            served = plain_model(self.transport, settings)
        self._info, self._codec = served.info, served.codec
        self._protocol, self._infer_url = served.protocol, served.infer_url

    async def aclose(self) -> None:
        """Close the session and its pooled connections."""
        await self.transport.aclose()

    def follow_inflight(self, calls: int) -> None:
        """Allow ``calls`` requests at once (the scheduler's in-flight window)."""
        self.transport.follow_inflight(calls)

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """Score a batch, splitting it to the batch limit and halving that limit on a 413."""
        batch = self._checked(batch)
        parts = await self._in_parts(batch, self._infer_once)
        if not parts:
            return np.empty((0, self._info.num_classes or 0), dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def infer_outputs(self, batch: np.ndarray) -> Outputs:
        """Every output of a v2 model for a batch, by name, as the server shapes it: split to
        the batch limit, halved on a 413 like :meth:`infer`, the parts' outputs joined along
        their batch axis."""
        if not isinstance(self._codec, V2Codec):
            raise ConfigError(
                f"{self.where}: several named outputs need the Open Inference Protocol v2 "
                f"(protocol=v2, v2-json or v2-binary), not {self._protocol}"
            )
        parts = await self._in_parts(self._checked(batch), self._outputs_once)
        return parts[0] if len(parts) == 1 else join_outputs(parts, self.where)

    def _checked(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.shape[1:] != self._info.input_shape:
            raise BackendError(
                f"batch of shape {batch.shape} does not fit the model input "
                f"{self._info.input_shape} of {self.where}"
            )
        return batch

    async def _in_parts(
        self, batch: np.ndarray, call: Callable[[np.ndarray], Awaitable[T]]
    ) -> list[T]:
        """``call`` on consecutive parts of ``batch`` within the batch limit; a part refused
        as too large halves the limit (which sticks) and is sent again."""
        parts: list[T] = []
        start = 0
        while start < len(batch):
            size = min(self._info.max_batch or len(batch), len(batch) - start)
            try:
                parts.append(await call(batch[start : start + size]))
            except BatchTooLarge as exc:
                if size == 1:
                    raise BackendError(
                        f"{self.where} refuses even a single input as too large: "
                        f"{exc or 'HTTP 413'}"
                    ) from None
                self._lower_batch_limit(size // 2)
                continue
            start += size
        return parts

    async def _outputs_once(self, batch: np.ndarray) -> Outputs:
        """One request for every output: encode, POST, check the status, decode."""
        assert isinstance(self._codec, V2Codec)
        request = self._codec.encode_all(batch)
        headers = dict(request.headers)
        body: Body = request.content
        if self.transport.options.gzip:
            body = gzip.compress(request.body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        values = sum(int(np.prod([abs(d) for d in o.shape])) for o in self._codec.outputs)
        limit = reply_limit(len(batch), values or None)
        status, reply_headers, reply = await self.transport.request(
            "POST", self._infer_url, body, headers, limit
        )
        self.transport.check_status(self._infer_url, status, reply, reply_headers)
        try:
            return self._codec.decode_all(reply, reply_headers)
        except ReplyError as exc:
            raise undecodable(public_url(self._infer_url), exc, reply) from None

    def _lower_batch_limit(self, limit: int) -> None:
        current = self._info.max_batch
        if current is None or limit < current:
            logger.warning("%s: batch too large; limiting requests to %d inputs", self.where, limit)
            self._info = dataclasses.replace(self._info, max_batch=limit)

    async def _infer_once(self, batch: np.ndarray) -> np.ndarray:
        """One request: encode, POST, check the status, decode and validate the scores."""
        request = self._codec.encode(batch)
        headers = dict(request.headers)
        body: Body = request.content
        if self.transport.options.gzip:
            body = gzip.compress(request.body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        limit = reply_limit(len(batch), self._info.num_classes)
        status, reply_headers, reply = await self.transport.request(
            "POST", self._infer_url, body, headers, limit
        )
        self.transport.check_status(self._infer_url, status, reply, reply_headers)
        try:
            scores = self._codec.decode(reply, reply_headers, len(batch))
        except ReplyError as exc:
            raise undecodable(public_url(self._infer_url), exc, reply) from None
        return self._validated(scores, len(batch))

    def _validated(self, scores: np.ndarray, batch_size: int) -> np.ndarray:
        where = public_url(self._infer_url)
        classes = self._info.num_classes
        if scores.ndim != 2 or scores.shape[0] != batch_size:
            expected = f"({batch_size}, {classes if classes else 'classes'})"
            raise BackendError(
                f"{where} returned scores of shape {scores.shape} for a batch of {batch_size}; "
                f"expected {expected}"
            )
        if classes is None:
            self._info = dataclasses.replace(self._info, num_classes=scores.shape[1])
        elif scores.shape[1] != classes:
            raise BackendError(
                f"{where} returned {scores.shape[1]} scores per input, earlier {classes}"
            )
        finite = np.isfinite(scores)
        if not finite.all():
            bad = int((~finite.all(axis=1)).sum())
            raise BackendError(
                f"{where} returned NaN or infinite scores for {bad} of {batch_size} inputs"
            )
        return scores.astype(np.float32, copy=False)


async def connect(spec: str, settings: BackendSettings) -> Backend:
    """Open an HTTP backend for an ``http(s)://`` spec (the entry point of ``http``/``https``)."""
    try:
        url = URL(spec)
        valid = url.scheme in ("http", "https") and bool(url.host) and url.port is not None
    except ValueError:  # yarl: a port that is no number, …
        valid = False
    if not valid:
        shown = re.sub(r"//[^/@]*@", "//", spec.split("?")[0])  # no credentials in errors
        raise ConfigError(f"{shown!r} is not an http(s)://host[:port]/… URL")
    options = HttpOptions.parse(url, settings.options)
    transport = HttpTransport(url, options, settings.timeout_s, settings.max_inflight)
    backend = HttpBackend(transport)
    try:
        await backend.setup(settings)
    except BaseException:
        await backend.aclose()
        raise
    return backend
