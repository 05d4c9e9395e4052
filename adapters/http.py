"""HTTP backend: models behind the Open Inference Protocol (v2), row-JSON or custom JSON endpoints.

Spec: the endpoint URL. For v2 it is the model URL, e.g. ``http://host:8000/v2/models/resnet``
(metadata is read from it, batches go to ``…/infer``); for ``rows`` and ``custom`` it is the URL
batches are POSTed to, and the input shape comes from ``--input-shape``.

Options (``settings.options``, all strings):

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
- ``input``/``output``: which v2 tensors to use when the model has several.
"""

from __future__ import annotations

import dataclasses
import gzip
import logging
import os
import re
import socket
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from multidict import CIMultiDictProxy
from rex_stream.adapters.http_protocols import (
    Codec,
    CustomCodec,
    CustomTemplate,
    ReplyError,
    RowsCodec,
    V2Codec,
    parse_json,
    v2_tensor,
)
from yarl import URL

from rex_stream.backend import Backend, BackendSettings, ModelInfo
from rex_stream.errors import BackendError, BackendTimeout, ConfigError

logger = logging.getLogger(__name__)

PROTOCOLS = ("v2", "v2-json", "v2-binary", "rows", "custom")
OPTIONS = ("protocol", "template", "max_batch", "gzip", "ca_bundle", "insecure", "input", "output")
# Replies that mean "this batch is too large" without being a 413 (Triton answers 400 with this).
TOO_LARGE = re.compile(r"batch[-_ ]?size must be <=|too large|exceeds? .*max", re.IGNORECASE)


class _TooLarge(Exception):
    """The server refused a batch for its size; the caller halves it."""


def _one_line(text: str, limit: int = 240) -> str:
    """Collapse whitespace so server messages fit the one-line error contract.

    A long message keeps its start and its end: servers that send tracebacks put the cause last.
    """
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + " … " + text[len(text) - (limit - head - 3) :]


def _public_url(url: URL) -> str:
    """The URL without credentials or query (either may carry secrets)."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


def _flag(options: Mapping[str, str], key: str) -> bool:
    value = options.get(key, "false").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"option {key}={value!r}: expected true or false")


def _header_value(name: str, source: str) -> str:
    """Resolve ``env:VAR`` / ``file:PATH`` / a literal into a header value."""
    if source.startswith("env:"):
        variable = source[4:]
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(f"header {name}: environment variable {variable} is not set")
        return value.strip()
    if source.startswith("file:"):
        try:
            return Path(source[5:]).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"header {name}: cannot read {source[5:]}: {exc.strerror or exc}"
            ) from exc
    return source


def _ssl_setting(options: Mapping[str, str], url: URL) -> ssl.SSLContext | bool:
    """TLS verification on by default; a CA bundle; or off, loudly."""
    if _flag(options, "insecure"):
        logger.warning("TLS certificate verification is OFF for %s (insecure=true)", url.host)
        return False
    bundle = options.get("ca_bundle")
    if bundle:
        try:
            return ssl.create_default_context(cafile=bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"ca_bundle={bundle}: cannot load it ({exc})") from exc
    return True


def _positive_int(options: Mapping[str, str], key: str) -> int | None:
    raw = options.get(key)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"option {key}={raw!r}: expected a positive integer")
    return value


class HttpBackend:
    """A model behind an HTTP endpoint; one aiohttp session, pooled to ``max_inflight``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: URL,
        settings: BackendSettings,
        *,
        gzip_requests: bool,
        header_names: tuple[str, ...],
    ) -> None:
        self._session = session
        self._url = url
        self._infer_url = url
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
        self._timeout_s = settings.timeout_s
        self._gzip = gzip_requests
        self._header_names = header_names
        self._codec: Codec = RowsCodec()
        self._protocol = "rows"
        self._info = ModelInfo(name=url.name or url.host or "http", input_name="", input_shape=())

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
        return _public_url(self._url)

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
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        """One HTTP exchange with a deadline; transport failures become one-line errors."""
        where = _public_url(url)
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=self._timeout
            ) as reply:
                return reply.status, reply.headers, await reply.read()
        except TimeoutError as exc:
            raise BackendTimeout(
                f"{where} did not answer within {self._timeout_s:g} s; raise the timeout or "
                "lower max_batch"
            ) from exc
        except aiohttp.ClientSSLError as exc:
            raise BackendError(
                f"TLS failure talking to {where}: {_one_line(str(exc.os_error or exc), 160)}; "
                "give ca_bundle=PATH for a private CA (insecure=true skips verification)"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, socket.gaierror):
                raise BackendError(
                    f"cannot resolve host {url.host!r} (DNS failure) for {where}; check the URL"
                ) from exc
            reason = exc.os_error.strerror or _one_line(str(exc), 120)
            raise BackendError(
                f"cannot connect to {url.host}:{url.port} ({reason}); "
                "is the server running and the URL right?"
            ) from exc
        except aiohttp.ClientError as exc:
            raise BackendError(
                f"HTTP exchange with {where} failed: {_one_line(str(exc) or type(exc).__name__)}"
            ) from exc

    def _check_status(self, url: URL, status: int, body: bytes) -> None:
        """Turn a non-2xx status into the error a user can act on."""
        if 200 <= status < 300:
            return
        where = _public_url(url)
        message = _server_message(body)
        if status == 413 or (status == 400 and TOO_LARGE.search(message)):
            raise _TooLarge(message)
        if status in (401, 403):
            sent = ", ".join(self._header_names) or "no custom headers"
            hint = (
                "check the credentials those headers carry"
                if self._header_names
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
        raise BackendError(f"{where} answered {status} ({kind}): {message or 'no message'}")

    async def get_json(self, url: URL) -> Any:
        """GET a JSON document (metadata), raising the usual errors."""
        status, _, body = await self._request("GET", url)
        try:
            self._check_status(url, status, body)
        except _TooLarge as exc:
            raise BackendError(f"{_public_url(url)} answered {status}: {exc}") from None
        try:
            return parse_json(body)
        except ReplyError as exc:
            raise BackendError(f"{_public_url(url)}: {exc}") from None

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
        if self._gzip:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        status, reply_headers, reply = await self._request("POST", self._infer_url, body, headers)
        self._check_status(self._infer_url, status, reply)
        try:
            scores = self._codec.decode(reply, reply_headers, len(batch))
        except ReplyError as exc:
            raise BackendError(f"{_public_url(self._infer_url)}: {exc}") from None
        return self._validated(scores, len(batch))

    def _validated(self, scores: np.ndarray, batch_size: int) -> np.ndarray:
        where = _public_url(self._infer_url)
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

    async def setup_v2(
        self, protocol: str, options: Mapping[str, str], settings: BackendSettings
    ) -> None:
        """Read v2 model metadata (and Triton's config, for max_batch_size) and pick a codec."""
        metadata = await self.get_json(self._url)
        try:
            inputs = [v2_tensor(entry, "inputs") for entry in metadata["inputs"]]
            outputs = [v2_tensor(entry, "outputs") for entry in metadata["outputs"]]
        except (KeyError, TypeError) as exc:
            raise BackendError(f"{self.where}: metadata lacks 'inputs'/'outputs'") from exc
        except ReplyError as exc:
            raise BackendError(f"{self.where}: {exc}") from None
        input_tensor = _choose(inputs, options.get("input"), "input", self.where)
        output_tensor = _choose(outputs, options.get("output"), "output", self.where)
        input_shape, batched, max_batch = _v2_layout(input_tensor, settings, self.where)
        server_limit = await self._triton_max_batch() if batched else None
        max_batch = _positive_int(options, "max_batch") or max_batch or server_limit
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

    def setup_plain(
        self, protocol: str, codec: Codec, options: Mapping[str, str], settings: BackendSettings
    ) -> None:
        """Rows/custom: no metadata, so the input shape must come from the settings."""
        if settings.input_shape is None:
            raise ConfigError(
                f"the HTTP rows/custom protocols cannot ask {self.where} for the model's input "
                "shape; give it with --input-shape (e.g. 3,224,224)"
            )
        self._codec, self._protocol = codec, protocol
        self._info = dataclasses.replace(
            self._info,
            input_name="instances",
            input_shape=tuple(settings.input_shape),
            max_batch=_positive_int(options, "max_batch"),
        )


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
                return _one_line(str(document[key]))
    return _one_line(text)


def _choose(tensors: list[Any], wanted: str | None, kind: str, where: str) -> Any:
    """Pick the named tensor, or the only/first one."""
    if not tensors:
        raise BackendError(f"{where}: model metadata lists no {kind}s")
    if wanted is None:
        if kind == "input" and len(tensors) > 1:
            names = ", ".join(t.name for t in tensors)
            raise ConfigError(f"{where} has several inputs ({names}); choose one with input=NAME")
        return tensors[0]
    for tensor in tensors:
        if tensor.name == wanted:
            return tensor
    names = ", ".join(t.name for t in tensors)
    raise ConfigError(f"{kind}={wanted!r} is not a model {kind} of {where} (it has: {names})")


def _v2_layout(
    tensor: Any, settings: BackendSettings, where: str
) -> tuple[tuple[int, ...], bool, int | None]:
    """(per-input shape, whether the model takes a batch axis, max batch implied by the shape)."""
    shape = tuple(tensor.shape)
    wanted = tuple(settings.input_shape) if settings.input_shape is not None else None
    if shape and shape[0] == -1:
        per_input, batched, limit = shape[1:], True, None
    elif wanted is not None and shape == wanted:
        per_input, batched, limit = shape, False, 1
    elif shape and shape[0] == 1:
        per_input, batched, limit = shape[1:], True, 1
    else:
        per_input, batched, limit = shape, False, 1
    if any(d < 0 for d in per_input) or (wanted is not None and per_input != wanted):
        fits = wanted is not None and len(wanted) == len(per_input)
        if not fits or any(
            d >= 0 and d != w for d, w in zip(per_input, wanted or (), strict=False)
        ):
            raise ConfigError(
                f"{where} takes inputs of shape {list(per_input)}; give a matching concrete "
                f"shape with --input-shape (got {list(wanted) if wanted else 'none'})"
            )
        per_input = wanted or per_input
    return per_input, batched, limit


def _default_protocol(url: URL, options: Mapping[str, str]) -> str:
    protocol = options.get("protocol")
    if protocol is None:
        if options.get("template"):
            return "custom"
        return "v2" if "/v2/models/" in url.path else "rows"
    protocol = protocol.strip().lower()
    if protocol not in PROTOCOLS:
        raise ConfigError(f"option protocol={protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if protocol.startswith("v2") and "/v2/models/" not in url.path:
        raise ConfigError(
            f"protocol={protocol} needs a model URL such as http://host:8000/v2/models/NAME, "
            f"not {_public_url(url)}"
        )
    return protocol


async def connect(spec: str, settings: BackendSettings) -> Backend:
    """Open an HTTP backend for an ``http(s)://`` spec (the entry point of ``http``/``https``)."""
    url = URL(spec)
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"{spec!r} is not an http(s):// URL with a host")
    options = dict(settings.options)
    unknown = [k for k in options if k not in OPTIONS and not k.startswith("header.")]
    if unknown:
        raise ConfigError(
            f"unknown HTTP backend option(s) {', '.join(sorted(unknown))}; known: "
            f"{', '.join(OPTIONS)}, header.NAME"
        )
    protocol = _default_protocol(url, options)
    codec: Codec | None = None
    if protocol == "custom":
        if not options.get("template"):
            raise ConfigError("protocol=custom needs template=PATH (a JSON request template)")
        codec = CustomCodec(CustomTemplate.load(options["template"]))
    elif protocol == "rows":
        codec = RowsCodec()
    headers = {
        key[len("header.") :]: _header_value(key[len("header.") :], value)
        for key, value in options.items()
        if key.startswith("header.")
    }
    connector = aiohttp.TCPConnector(
        limit=max(1, settings.max_inflight), ssl=_ssl_setting(options, url), keepalive_timeout=60
    )
    session = aiohttp.ClientSession(connector=connector, headers=headers)
    backend = HttpBackend(
        session,
        url,
        settings,
        gzip_requests=_flag(options, "gzip"),
        header_names=tuple(headers),
    )
    try:
        if codec is None:
            await backend.setup_v2(protocol, options, settings)
        else:
            backend.setup_plain(protocol, codec, options, settings)
    except BaseException:
        await backend.aclose()
        raise
    return backend
