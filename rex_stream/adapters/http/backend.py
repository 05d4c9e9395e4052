"""HTTP backend: models behind the Open Inference Protocol (v2), row-JSON or custom JSON endpoints.

Spec: the endpoint URL. For v2 it is the model URL, e.g. ``http://host:8000/v2/models/resnet``
(metadata is read from it, batches go to ``…/infer``); for ``rows`` and ``custom`` it is the URL
batches are POSTed to, and the input shape comes from ``--input-shape``.

Options (``settings.options``, all strings; ``--backend-option KEY=VALUE`` on the command line):

- ``protocol``: ``v2`` (binary tensors when the server advertises ``binary_tensor_data``, JSON
  otherwise), ``v2-json``, ``v2-binary``, ``rows`` or ``custom``. Default: ``custom`` when a
  template is given, ``v2`` for ``/v2/models/`` URLs, ``rows`` otherwise.
- ``header.NAME``: a header sent with every request; ``env:VAR`` or ``file:PATH`` read the value
  from the environment or a file. Values never appear in errors or logs, only names.
- ``ca_bundle=PATH`` (a private CA), ``insecure=true`` (no TLS verification; logs a warning).
- ``template=PATH``: the custom protocol's template (see :class:`CustomTemplate`).
- ``max_batch=N``: largest batch per request (default: from the server's metadata, if any).
  A 413 (or a "batch too large" reply) halves it and retries, and the smaller limit sticks.
- ``gzip=true``: gzip request bodies. Replies are decompressed whenever the server gzips them.
- ``allow_insecure_redirect=true``: follow a redirect from https to plain http (refused
  otherwise). Redirects are followed by hand: the ``header.*`` values go only to the origin
  (scheme, host, port) of the configured URL, never to another one.
- ``input``/``output``: which v2 tensors to use when the model has several.

One ``aiohttp.ClientSession`` per backend, its connection pool limited to ``max_inflight`` (the
scheduler never has more calls in flight), keep-alive, a deadline on every request. Replies are
read in chunks and capped (:func:`reply_limit`: ample room for the expected scores, never less
than 16 MiB), so a broken server streaming without end fails the call, not the machine.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import gzip
import logging
import re
import socket
from collections.abc import Mapping
from typing import Any

import aiohttp
import numpy as np
from multidict import CIMultiDictProxy
from yarl import URL

from rex_stream.adapters.http.options import HttpOptions, public_url
from rex_stream.adapters.http.protocols import (
    Codec,
    CustomCodec,
    CustomTemplate,
    ReplyError,
    RowsCodec,
    one_line,
    parse_json,
)
from rex_stream.adapters.http.v2 import V2Codec, choose_tensor, v2_layout, v2_tensor
from rex_stream.engine.backend import Backend, BackendSettings, ModelInfo
from rex_stream.errors import BackendError, BackendTimeout, ConfigError, TransientBackendError

__all__ = ["CustomTemplate", "HttpBackend", "HttpOptions", "connect"]

logger = logging.getLogger(__name__)

# Replies that mean "this batch is too large" without being a 413 (Triton answers 400 with this).
TOO_LARGE = re.compile(r"batch[-_ ]?size must be <=|too large|exceeds? .*max", re.IGNORECASE)


#: Server errors that will not pass by retrying (not implemented, HTTP version not supported…).
NOT_TRANSIENT = frozenset({501, 505, 506, 508, 510, 511})


def retry_after_s(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), if valid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


#: Redirect statuses followed (by hand, so that secrets never leave their origin).
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
#: Replies are read in chunks and capped: never below this many bytes (metadata, errors) …
REPLY_FLOOR_BYTES = 16 * 2**20
#: … and for scores at this many bytes per expected score (JSON text of a float with its
#: separators is ~20 bytes; the rest is slack), assuming this many classes while unknown.
REPLY_BYTES_PER_SCORE = 128
UNKNOWN_CLASSES = 1 << 16
READ_CHUNK_BYTES = 1 << 16


def reply_limit(batch_size: int, classes: int | None) -> int:
    """The largest reply accepted for a batch: generous, but bounded whatever the server does."""
    expected = max(batch_size, 1) * (classes or UNKNOWN_CLASSES) * REPLY_BYTES_PER_SCORE
    return max(REPLY_FLOOR_BYTES, expected)


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme, (url.host or "").lower(), url.explicit_port or url.port)


async def _read_capped(reply: aiohttp.ClientResponse, limit: int, where: str) -> bytes:
    """The reply body, read in chunks; more than ``limit`` bytes is a one-line error."""

    cap = f"{limit / 2**20:.0f} MiB"
    advice = "refusing it (is this the right endpoint?)"
    declared = reply.content_length
    if declared is not None and declared > limit:
        raise BackendError(
            f"{where} announced a reply of {declared / 2**20:.0f} MiB, over the {cap} these "
            f"scores could need; {advice}"
        )
    chunks: list[bytes] = []
    total = 0
    async for chunk in reply.content.iter_chunked(READ_CHUNK_BYTES):
        total += len(chunk)
        if total > limit:
            raise BackendError(
                f"{where} sent a reply over {cap}, far more than these scores need; {advice}"
            )
        chunks.append(chunk)
    return b"".join(chunks)


class _TooLarge(Exception):
    """The server refused a batch for its size; the caller halves it."""


class HttpBackend:
    """A model behind an HTTP endpoint; one aiohttp session, pooled to ``max_inflight``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: URL,
        settings: BackendSettings,
        options: HttpOptions,
    ) -> None:
        self._session = session
        self._url = url
        self._infer_url = url
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
        self._timeout_s = settings.timeout_s
        self._options = options
        self._codec: Codec = RowsCodec()
        self._protocol = "rows"
        self._info = ModelInfo(
            name=url.name or url.host or "http", input_name="", input_shape=(),
            identity={"kind": "http", "url": public_url(url)},
        )  # fmt: skip

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
        return public_url(self._url)

    async def aclose(self) -> None:
        """Close the session and its pooled connections."""
        await self._session.close()

    # ----------------------------------------------------------------------- transport

    async def _request(
        self,
        method: str,
        url: URL,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        limit: int = REPLY_FLOOR_BYTES,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """One HTTP exchange with a deadline, redirects followed here (secrets stay with their
        origin) and the reply capped at ``limit`` bytes; failures become one-line errors."""
        where = public_url(url)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                sent = dict(headers or {})
                if _origin(url) == _origin(self._url):
                    sent.update(self._options.headers)  # secrets go to the configured origin only
                async with self._session.request(
                    method, url, data=body, headers=sent, timeout=self._timeout,
                    allow_redirects=False,
                ) as reply:  # fmt: skip
                    location = reply.headers.get("Location")
                    if reply.status in REDIRECTS and location:
                        url, method, body, headers = self._redirect(
                            url, location, reply.status, method, body, headers
                        )
                        where = public_url(url)
                        continue
                    return reply.status, reply.headers, await _read_capped(reply, limit, where)
            raise BackendError(f"{where}: more than {MAX_REDIRECTS} redirects; check the URL")
        except TimeoutError as exc:
            raise BackendTimeout(
                f"{where} did not answer within {self._timeout_s:g} s; raise the timeout or "
                "lower max_batch"
            ) from exc
        except aiohttp.ClientSSLError as exc:
            raise BackendError(
                f"TLS failure talking to {where}: {one_line(str(exc.os_error or exc), 160)}; "
                "give ca_bundle=PATH for a private CA (insecure=true skips verification)"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, socket.gaierror):
                raise BackendError(
                    f"cannot resolve host {url.host!r} (DNS failure) for {where}; check the URL"
                ) from exc
            reason = exc.os_error.strerror or one_line(str(exc), 120)
            raise TransientBackendError(
                f"cannot connect to {url.host}:{url.port} ({reason}); "
                "is the server running and the URL right?",
                unreachable=True,
            ) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise TransientBackendError(
                f"{where} dropped the connection: {one_line(str(exc) or type(exc).__name__)}",
                unreachable=True,
            ) from exc
        except aiohttp.ClientPayloadError as exc:
            raise TransientBackendError(
                f"{where} broke off its reply: {one_line(str(exc) or type(exc).__name__)}"
            ) from exc
        except aiohttp.ClientError as exc:
            raise BackendError(
                f"HTTP exchange with {where} failed: {one_line(str(exc) or type(exc).__name__)}"
            ) from exc

    def _redirect(
        self,
        url: URL,
        location: str,
        status: int,
        method: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[URL, str, bytes | None, Mapping[str, str] | None]:
        """Where a redirect leads, refusing https → http unless allowed; a 303 becomes a GET."""
        target = url.join(URL(location))
        if target.scheme not in ("http", "https") or not target.host:
            raise BackendError(f"{public_url(url)} redirects to {location!r}, not an http(s) URL")
        downgrade = url.scheme == "https" and target.scheme == "http"
        if downgrade and not self._options.insecure_redirect:
            raise BackendError(
                f"{public_url(url)} redirects to plain http ({public_url(target)}); refusing the "
                "downgrade (allow_insecure_redirect=true allows it)"
            )
        if _origin(target) != _origin(self._url):
            logger.info("%s redirects to another origin, %s; custom headers are not sent there",
                        public_url(url), public_url(target))  # fmt: skip
        if status == 303 and method != "GET":
            kept = {k: v for k, v in (headers or {}).items() if k.lower() != "content-encoding"}
            return target, "GET", None, kept
        return target, method, body, headers

    def _check_status(
        self, url: URL, status: int, body: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        """Turn a non-2xx status into the error a user can act on (5xx and 429 transient)."""
        if 200 <= status < 300:
            return
        where = public_url(url)
        message = _server_message(body)
        if status == 413 or (status == 400 and TOO_LARGE.search(message)):
            raise _TooLarge(message)
        if status in (401, 403):
            sent = ", ".join(self._options.header_names) or "no custom headers"
            hint = (
                "check the credentials those headers carry"
                if self._options.header_names
                else "pass one with header.Authorization=env:VAR"
            )
            raise BackendError(
                f"{where} answered {status} ({'unauthorized' if status == 401 else 'forbidden'})"
                f"; sent {sent} (values not shown); {hint}"
            )
        if status == 404:
            raise BackendError(
                f"{where} answered 404 (not found: check the model name and URL)"
                + (f": {message}" if message else "")
            )
        kind = "server error" if status >= 500 else "request rejected"
        text = f"{where} answered {status} ({kind}): {message or 'no message'}"
        if status == 429 or (status >= 500 and status not in NOT_TRANSIENT):
            retry_after = retry_after_s(headers.get("Retry-After") if headers else None)
            raise TransientBackendError(text, retry_after)
        raise BackendError(text)

    async def get_json(self, url: URL) -> Any:
        """GET a JSON document (metadata), raising the usual errors."""
        status, _, body = await self._request("GET", url)
        try:
            self._check_status(url, status, body)
        except _TooLarge as exc:
            raise BackendError(f"{public_url(url)} answered {status}: {exc}") from None
        try:
            return parse_json(body)
        except ReplyError as exc:
            raise BackendError(f"{public_url(url)}: {exc}") from None

    # ----------------------------------------------------------------------- inference

    async def infer(self, batch: np.ndarray) -> np.ndarray:
        """Score a batch, splitting it to the batch limit and halving that limit on a 413."""
        batch = np.asarray(batch)
        if batch.shape[1:] != self._info.input_shape:
            raise BackendError(
                f"batch of shape {batch.shape} does not fit the model input "
                f"{self._info.input_shape} of {self.where}"
            )
        parts: list[np.ndarray] = []
        start = 0
        while start < len(batch):
            size = min(self._info.max_batch or len(batch), len(batch) - start)
            try:
                parts.append(await self._infer_once(batch[start : start + size]))
            except _TooLarge as exc:
                if size == 1:
                    raise BackendError(
                        f"{self.where} refuses even a single input as too large: "
                        f"{exc or 'HTTP 413'}"
                    ) from None
                self._lower_batch_limit(size // 2)
                continue
            start += size
        if not parts:
            return np.empty((0, self._info.num_classes or 0), dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _lower_batch_limit(self, limit: int) -> None:
        current = self._info.max_batch
        if current is None or limit < current:
            logger.warning("%s: batch too large; limiting requests to %d inputs", self.where, limit)
            self._info = dataclasses.replace(self._info, max_batch=limit)

    async def _infer_once(self, batch: np.ndarray) -> np.ndarray:
        """One request: encode, POST, check the status, decode and validate the scores."""
        request = self._codec.encode(batch)
        headers = dict(request.headers)
        body = request.body
        if self._options.gzip:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        limit = reply_limit(len(batch), self._info.num_classes)
        status, reply_headers, reply = await self._request(
            "POST", self._infer_url, body, headers, limit
        )
        self._check_status(self._infer_url, status, reply, reply_headers)
        try:
            scores = self._codec.decode(reply, reply_headers, len(batch))
        except ReplyError as exc:
            raise BackendError(f"{public_url(self._infer_url)}: {exc}") from None
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

    # ----------------------------------------------------------------------- set-up

    async def setup_v2(self, settings: BackendSettings) -> None:
        """Read v2 model metadata (and Triton's config, for max_batch_size) and pick a codec."""
        metadata = await self.get_json(self._url)
        try:
            inputs = [v2_tensor(entry, "inputs") for entry in metadata["inputs"]]
            outputs = [v2_tensor(entry, "outputs") for entry in metadata["outputs"]]
        except (KeyError, TypeError) as exc:
            raise BackendError(f"{self.where}: metadata lacks 'inputs'/'outputs'") from exc
        except ReplyError as exc:
            raise BackendError(f"{self.where}: {exc}") from None
        options = self._options
        input_tensor = choose_tensor(inputs, options.input_name, "input", self.where)
        output_tensor = choose_tensor(outputs, options.output_name, "output", self.where)
        input_shape, batched, max_batch = v2_layout(input_tensor, settings, self.where)
        server_limit = await self._triton_max_batch() if batched else None
        max_batch = options.max_batch or max_batch or server_limit
        protocol = options.protocol
        if protocol == "v2":
            protocol = "v2-binary" if await self._advertises_binary() else "v2-json"
        self._codec = V2Codec(
            input_tensor, output_tensor.name, binary=protocol == "v2-binary", batched=batched
        )
        classes = output_tensor.shape[-1] if output_tensor.shape else None
        self._info = ModelInfo(
            name=str(metadata.get("name", self._url.name)),
            input_name=input_tensor.name,
            input_shape=input_shape,
            dtype=self._codec.dtype,
            max_batch=max_batch,
            num_classes=classes if classes and classes > 0 else None,
            output_name=output_tensor.name,
            identity={"kind": "http", "url": self.where, **_v2_identity(metadata)},
        )
        self._infer_url = self._url / "infer"
        self._protocol = protocol
        logger.info("%s: v2 model %s over %s", self.where, self._info.name, protocol)

    async def _triton_max_batch(self) -> int | None:
        """Triton publishes ``max_batch_size`` at ``…/config``; other servers may 404 here."""
        try:
            status, _, body = await self._request("GET", self._url / "config")
            config = parse_json(body) if status == 200 else {}
        except (BackendError, ReplyError):
            return None
        value = config.get("max_batch_size") if isinstance(config, dict) else None
        return int(value) if isinstance(value, int) and value > 0 else None

    async def _advertises_binary(self) -> bool:
        """Whether the server metadata (``GET /v2``) lists the binary tensor data extension."""
        path = self._url.path
        root = self._url.with_path(path[: path.index("/v2/models/")] + "/v2")
        try:
            status, _, body = await self._request("GET", root)
            document = parse_json(body) if status == 200 else {}
        except (BackendError, ReplyError):
            return False
        extensions = document.get("extensions", []) if isinstance(document, dict) else []
        return "binary_tensor_data" in extensions

    def setup_plain(self, settings: BackendSettings) -> None:
        """Rows/custom: no metadata, so the input shape must come from the settings."""
        if settings.input_shape is None:
            raise ConfigError(
                f"the HTTP rows/custom protocols cannot ask {self.where} for the model's input "
                "shape; give it with --input-shape (e.g. 3,224,224)"
            )
        template = self._options.template
        self._codec = CustomCodec(template) if template is not None else RowsCodec()
        self._protocol = self._options.protocol
        self._info = dataclasses.replace(
            self._info,
            input_name="instances",
            input_shape=tuple(settings.input_shape),
            max_batch=self._options.max_batch,
        )


def _v2_identity(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What names the served model in v2 metadata: name, versions, platform."""
    return {k: metadata.get(k) for k in ("name", "versions", "platform")}


def _server_message(body: bytes) -> str:
    """The error text of a reply: ``{"error": …}`` / ``{"detail": …}`` or the body itself."""
    text = body[:2000].decode("utf-8", "replace")
    try:
        document = parse_json(body) if body.strip()[:1] in (b"{", b"[") else None
    except ReplyError:
        document = None
    if isinstance(document, dict):
        for key in ("error", "detail", "message", "msg"):
            if key in document:
                return one_line(str(document[key]))
    return one_line(text)


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
    connector = aiohttp.TCPConnector(
        limit=max(1, settings.max_inflight), ssl=options.tls, keepalive_timeout=60
    )
    session = aiohttp.ClientSession(connector=connector)  # headers per request, by origin
    backend = HttpBackend(session, url, settings, options)
    try:
        if options.protocol.startswith("v2"):
            await backend.setup_v2(settings)
        else:
            backend.setup_plain(settings)
    except BaseException:
        await backend.aclose()
        raise
    return backend
