"""The HTTP backend's transport: one aiohttp session, a deadline on every exchange, redirects
followed by hand (secrets stay with their origin), replies read in chunks and capped.

Every aiohttp failure becomes one :mod:`rex_stream.errors` exception here (:meth:`request`);
what a reply's status means is :func:`~rex_stream.adapters.http.replies.check_status`.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

import aiohttp
import anyio
from multidict import CIMultiDictProxy
from yarl import URL

from rex_stream.adapters.http.options import HttpOptions
from rex_stream.adapters.http.protocols import BodyParts, ReplyError, one_line, parse_json
from rex_stream.adapters.http.replies import BatchTooLarge, check_status
from rex_stream.adapters.security import public_url
from rex_stream.errors import BackendError, BackendTimeout, TransientBackendError

logger = logging.getLogger("rex_stream.adapters.http.backend")

#: Redirect statuses followed (by hand, so that secrets never leave their origin).
REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
#: Bodies from this size go out after the headers, part by part, instead of joined to them.
SEPARATE_BODY_BYTES = 1 << 16

#: A request body: one ``bytes``, or parts sent one after another (see ``BodyParts``).
Body = bytes | BodyParts


class _PartsAfterHeaders(aiohttp.Payload):
    """A large body written after the request's headers, part by part: a v2 batch goes to
    the socket straight from the array's memory. aiohttp would otherwise join the headers and
    the body into a new buffer (a copy of the whole batch per call) on Python before 3.12.9,
    and a joined body would be one more copy."""

    _autoclose = True

    def __init__(self, parts: BodyParts) -> None:
        super().__init__(parts)
        # flat byte views: lengths and slices count bytes whatever the array's shape
        self._parts = tuple(part if isinstance(part, bytes) else part.cast("B") for part in parts)
        self._length = sum(len(part) for part in self._parts)
        self._size = self._length

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return b"".join(self._parts).decode(encoding, errors)

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        # aiohttp ≥ 3.12 holds the headers back to join them to the first write: fine for a
        # small part (the v2 JSON header), a whole copy for a large one, so those go alone
        send_headers = getattr(writer, "send_headers", None)
        left = self._length if content_length is None else content_length
        for part in self._parts:
            if left <= 0:
                break
            chunk = part if len(part) <= left else part[:left]
            if len(chunk) >= SEPARATE_BODY_BYTES and send_headers is not None:
                send_headers()
            await writer.write(chunk)
            left -= len(chunk)


def _payload(body: Body | None) -> Any:
    if body is None or (isinstance(body, bytes) and len(body) < SEPARATE_BODY_BYTES):
        return body
    parts: BodyParts = (body,) if isinstance(body, bytes) else body
    if sum(memoryview(part).nbytes for part in parts) < SEPARATE_BODY_BYTES:
        return b"".join(parts)
    return _PartsAfterHeaders(parts)


#: Replies are read in chunks and capped: never below this many bytes (metadata, errors) …
REPLY_FLOOR_BYTES = 16 * 2**20
#: … and for scores at this many bytes per expected score (JSON text of a float with its
#: separators is ~20 bytes; the rest is slack), assuming this many classes while unknown.
REPLY_BYTES_PER_SCORE = 128
UNKNOWN_CLASSES = 1 << 16
#: … and never above this, whatever the server's metadata declares (a broken or hostile
#: server must not make the client buffer gigabytes).
REPLY_CEILING_BYTES = 2**30
#: The most values per row an output's metadata may declare (1e9 is a broken server).
MAX_DECLARED_CLASSES = 1 << 24
READ_CHUNK_BYTES = 1 << 16
#: Idle pooled connections close after this long (the pool shrinks after the window does).
KEEPALIVE_S = 30.0

Reply = tuple[int, CIMultiDictProxy[str], bytes]


def reply_limit(batch_size: int, classes: int | None) -> int:
    """The largest reply accepted for a batch: generous, but bounded whatever the server does."""
    expected = max(batch_size, 1) * (classes or UNKNOWN_CLASSES) * REPLY_BYTES_PER_SCORE
    return min(REPLY_CEILING_BYTES, max(REPLY_FLOOR_BYTES, expected))


async def read_capped(reply: aiohttp.ClientResponse, limit: int, where: str) -> bytes:
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
    try:
        async for chunk in reply.content.iter_chunked(READ_CHUNK_BYTES):
            total += len(chunk)
            if total > limit:
                raise BackendError(
                    f"{where} sent a reply over {cap}, far more than these scores need; {advice}"
                )
            chunks.append(chunk)
        return b"".join(chunks)
    except MemoryError:
        chunks.clear()
        raise BackendError(
            f"{where}: out of memory reading a reply of {total / 2**20:.0f} MiB; lower "
            "--batch-size or --max-inflight"
        ) from None


class HttpTransport:
    """One aiohttp session to one configured URL: ``max_inflight`` exchanges at once, a number
    the scheduler's in-flight window moves (:meth:`follow_inflight`).

    The connection pool opens connections as exchanges need them, so it holds as many as the
    window has allowed (idle ones close after the keep-alive time); the exchanges themselves
    are gated here, not by a pool size fixed when the transport opened.
    """

    def __init__(self, url: URL, options: HttpOptions, timeout_s: float, max_inflight: int):
        self.url = url
        self.options = options
        self.timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._exchanges = anyio.CapacityLimiter(max(1, max_inflight))
        connector = aiohttp.TCPConnector(limit=0, ssl=options.tls, keepalive_timeout=KEEPALIVE_S)
        self.session = aiohttp.ClientSession(connector=connector)  # headers per request

    @property
    def max_inflight(self) -> int:
        """Exchanges allowed at once now."""
        return int(self._exchanges.total_tokens)

    def follow_inflight(self, calls: int) -> None:
        """Allow ``calls`` exchanges at once (the scheduler's window); running ones go on."""
        self._exchanges.total_tokens = max(1, calls)

    async def aclose(self) -> None:
        """Close the session and its pooled connections."""
        await self.session.close()

    async def request(
        self,
        method: str,
        url: URL,
        body: Body | None = None,
        headers: Mapping[str, str] | None = None,
        limit: int = REPLY_FLOOR_BYTES,
    ) -> Reply:
        """One HTTP exchange with a deadline, redirects followed here (secrets stay with their
        origin) and the reply capped at ``limit`` bytes; failures become one-line errors."""
        async with self._exchanges:
            return await self._exchange(method, url, body, headers, limit)

    async def _exchange(
        self,
        method: str,
        url: URL,
        body: Body | None,
        headers: Mapping[str, str] | None,
        limit: int,
    ) -> Reply:
        where = public_url(url)
        rules = self.options.redirects
        try:
            for _ in range(MAX_REDIRECTS + 1):
                sent = dict(headers or {})
                if rules.sends_secrets_to(url):
                    sent.update(self.options.headers)  # secrets go to the configured origin only
                async with self.session.request(
                    method, url, data=_payload(body), headers=sent, timeout=self._timeout,
                    allow_redirects=False,
                ) as reply:  # fmt: skip
                    location = reply.headers.get("Location")
                    if reply.status in REDIRECTS and location:
                        url, method, body, headers = self._redirect(
                            url, location, reply.status, method, body, headers
                        )
                        where = public_url(url)
                        continue
                    return reply.status, reply.headers, await read_capped(reply, limit, where)
            raise BackendError(f"{where}: more than {MAX_REDIRECTS} redirects; check the URL")
        except TimeoutError as exc:
            raise BackendTimeout(
                f"{where} did not answer within {self.timeout_s:g} s; raise the timeout or "
                "lower max_batch"
            ) from exc
        except aiohttp.ClientError as exc:
            raise _exchange_error(exc, url, where) from exc

    def _redirect(
        self,
        url: URL,
        location: str,
        status: int,
        method: str,
        body: Body | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[URL, str, Body | None, Mapping[str, str] | None]:
        """Where a redirect leads, refusing https → http unless allowed; a 303 becomes a GET."""
        target = url.join(URL(location))
        rules = self.options.redirects
        rules.check(url, target, public_url(url))
        if not rules.sends_secrets_to(target):
            logger.info("%s redirects to another origin, %s; custom headers are not sent there",
                        public_url(url), public_url(target))  # fmt: skip
        if status == 303 and method != "GET":
            kept = {k: v for k, v in (headers or {}).items() if k.lower() != "content-encoding"}
            return target, "GET", None, kept
        return target, method, body, headers

    def check_status(
        self, url: URL, status: int, body: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        """Raise the error a non-2xx reply means (see :func:`check_status`)."""
        check_status(public_url(url), status, body, self.options.header_names, headers)

    async def get_json(self, url: URL) -> Any:
        """GET a JSON document (metadata), raising the usual errors."""
        status, _, body = await self.request("GET", url)
        try:
            self.check_status(url, status, body)
        except BatchTooLarge as exc:
            raise BackendError(f"{public_url(url)} answered {status}: {exc}") from None
        try:
            return parse_json(body)
        except ReplyError as exc:
            raise BackendError(f"{public_url(url)}: {exc}") from None

    async def get_optional_json(self, url: URL) -> Any:
        """GET a JSON document that servers may lack: ``{}`` on any failure."""
        try:
            status, _, body = await self.request("GET", url)
            return parse_json(body) if status == 200 else {}
        except (BackendError, ReplyError):
            return {}


def _exchange_error(exc: aiohttp.ClientError, url: URL, where: str) -> BackendError:
    """The one mapping from aiohttp's failures to the library's errors."""
    if isinstance(exc, aiohttp.ClientSSLError):
        return BackendError(
            f"TLS failure talking to {where}: {one_line(str(exc.os_error or exc), 160)}; "
            "give ca_bundle=PATH for a private CA (insecure=true skips verification)"
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, socket.gaierror):
            return BackendError(
                f"cannot resolve host {url.host!r} (DNS failure) for {where}; check the URL"
            )
        reason = exc.os_error.strerror or one_line(str(exc), 120)
        return TransientBackendError(
            f"cannot connect to {url.host}:{url.port} ({reason}); "
            "is the server running and the URL right?",
            unreachable=True,
        )
    detail = one_line(str(exc) or type(exc).__name__)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        # one connection reset: retry this call alone (a server that is really gone refuses
        # the retry's connection, and that abandons the other calls in flight)
        return TransientBackendError(f"{where} dropped the connection: {detail}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransientBackendError(f"{where} broke off its reply: {detail}")
    return BackendError(f"HTTP exchange with {where} failed: {detail}")
