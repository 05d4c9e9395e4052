"""aiohttp test apps on 127.0.0.1 for the HTTP adapter: row-JSON, custom JSON, and error replies.

The apps score with a real model (any ``score(batch) -> scores`` callable, e.g. onnxruntime) so
results can be compared exactly; the error routes answer the way misbehaving servers do. The
server runs on its own event loop in a thread, so both async tests and blocking callers (the
sync API, benchmarks) can talk to it; it records what it received for the tests to check.

Routes (all POST unless noted):

- ``/rows``: TF Serving style, ``{"instances": […]}`` → ``{"predictions": […]}``;
- ``/torchserve``: the same request, a bare list of rows as the reply;
- ``/custom``: ``{"model": …, "payload": {"pixels": […], "n": N}}`` →
  ``{"result": {"scores": […]}}`` (the scores flat when the request says ``"flat": true``);
- ``/limited``: rows, but 413 for batches larger than ``limit`` (a query parameter);
- ``/auth``: rows, 401 unless ``Authorization: Bearer <token>``; ``/forbidden``: always 403;
- ``/error500``: 500 with a JSON error; ``/malformed``: 200 with a body that is not JSON;
  ``/not-utf8``: 200 with bytes that are not even text;
- ``/wrong-shape``: one prediction row too few; ``/nan``: a NaN score in the first row;
- ``/slow``: never answers until the server stops (for client timeouts);
- ``/flaky?after=N&key=K``: rows for the first N requests carrying key K, then 503 for good
  (a server that dies mid-run);
- ``/faulty?key=K``: rows, with faults injected by request count (per key): a 500 every tenth
  request, a 503 with ``Retry-After: 1`` on the third, a 429 with ``Retry-After: 0`` on every
  tenth from the seventh, and a TCP reset (no reply) on the fifth and every 25th from the 12th;
  ``server.faults`` counts what was injected;
- ``/endless``: 200 with a chunked body that never ends (until the client hangs up);
  ``server.streamed`` counts the bytes written;
- ``/redirect?to=URL&status=307`` (any method): a redirect to ``URL`` (to itself without
  ``to``: a loop); the header names of each request are kept in ``server.redirected``;
- ``/bad-request``: 400 with a multi-line text message;
- ``/v2/models/{name}`` (GET) and ``…/infer``: a v2 endpoint for broken replies. Every name
  has the tiny model's metadata except ``no-inputs``; ``infer`` answers per name:
  ``no-outputs`` (an empty list), ``other-output`` (only ``probs``), ``short-binary`` (binary
  data shorter than announced), ``bad-size`` (data that does not fill its shape).
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

Scorer = Callable[[np.ndarray], np.ndarray]


@dataclass
class Received:
    """What one request carried (header names only for auth, never the whole header set)."""

    route: str
    batch_size: int
    content_encoding: str | None
    had_authorization: bool
    header_names: frozenset[str] = frozenset()  # lower-case names of every header received


@dataclass
class AppServer:
    """A running test app: its base URL and the log of requests it received."""

    base_url: str
    received: list[Received] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)  # /faulty: injected faults by kind
    streamed: int = 0  # /endless: bytes written before the client went away
    redirected: list[frozenset[str]] = field(default_factory=list)  # /redirect: header names

    def url(self, route: str) -> str:
        """Absolute URL of one route."""
        return self.base_url + route

    def batch_sizes(self, route: str) -> list[int]:
        """Batch sizes received on one route, in arrival order."""
        return [r.batch_size for r in self.received if r.route == route]


def _batch(document: Any) -> np.ndarray:
    return np.asarray(document["instances"], dtype=np.float32)


def build_app(
    score: Scorer, server: AppServer, token: str, release: asyncio.Event
) -> web.Application:
    """The aiohttp application with every route described in the module docstring."""
    served: dict[str, int] = {}  # /flaky: requests served so far, per key

    async def read(request: web.Request) -> Any:
        document = await request.json()
        instances = document.get("instances") or document.get("payload", {}).get("pixels", [])
        server.received.append(
            Received(
                route=request.path,
                batch_size=len(instances),
                content_encoding=request.headers.get("Content-Encoding"),
                had_authorization="Authorization" in request.headers,
                header_names=frozenset(name.lower() for name in request.headers),
            )
        )
        return document

    async def rows(request: web.Request) -> web.Response:
        scores = score(_batch(await read(request)))
        return web.json_response({"predictions": scores.tolist()})

    async def torchserve(request: web.Request) -> web.Response:
        return web.json_response(score(_batch(await read(request))).tolist())

    async def custom(request: web.Request) -> web.Response:
        document = await read(request)
        payload = document["payload"]
        batch = np.asarray(payload["pixels"], dtype=np.float32)
        if len(batch) != payload["n"]:
            return web.json_response({"error": "n does not match pixels"}, status=400)
        scores = score(batch)
        values = scores.ravel().tolist() if document.get("flat") else scores.tolist()
        return web.json_response({"result": {"scores": values}, "model": document["model"]})

    async def limited(request: web.Request) -> web.Response:
        batch = _batch(await read(request))
        if len(batch) > int(request.query.get("limit", "4")):
            return web.Response(status=413, text="Payload Too Large")
        return web.json_response({"predictions": score(batch).tolist()})

    async def auth(request: web.Request) -> web.Response:
        batch = _batch(await read(request))
        if request.headers.get("Authorization") != f"Bearer {token}":
            return web.json_response({"error": "invalid token"}, status=401)
        return web.json_response({"predictions": score(batch).tolist()})

    async def forbidden(request: web.Request) -> web.Response:
        await read(request)
        return web.json_response({"error": "not allowed"}, status=403)

    async def error500(request: web.Request) -> web.Response:
        await read(request)
        return web.json_response({"error": "model crashed:\n  CUDA out of memory"}, status=500)

    async def bad_request(request: web.Request) -> web.Response:
        await read(request)
        return web.Response(status=400, text="input rejected\nexpected uint8 pixels\n")

    async def malformed(request: web.Request) -> web.Response:
        await read(request)
        return web.Response(text='{"predictions": [[0.1, 0.2', content_type="application/json")

    async def not_utf8(request: web.Request) -> web.Response:
        await read(request)
        return web.Response(body=b"\x80\x81garbage", content_type="application/json")

    async def wrong_shape(request: web.Request) -> web.Response:
        scores = score(_batch(await read(request)))
        return web.json_response({"predictions": scores[1:].tolist()})

    async def nan(request: web.Request) -> web.Response:
        scores = score(_batch(await read(request))).astype(np.float64)
        scores[0, 0] = math.nan
        # Python's json writes NaN as a bare token, as many real servers do.
        return web.Response(text=json.dumps({"predictions": scores.tolist()}))

    async def flaky(request: web.Request) -> web.Response:
        batch = _batch(await read(request))
        key = request.query.get("key", "")
        served[key] = served.get(key, 0) + 1
        if served[key] > int(request.query["after"]):
            return web.json_response({"error": "server is shutting down"}, status=503)
        return web.json_response({"predictions": score(batch).tolist()})

    async def faulty(request: web.Request) -> web.StreamResponse:
        batch = _batch(await read(request))
        key = request.query.get("key", "")
        served[key] = n = served.get(key, 0) + 1
        kind = _fault(n)
        if kind is not None:
            server.faults[kind] = server.faults.get(kind, 0) + 1
        if kind == "reset":
            _reset(request)
            return web.Response()  # never sent: the connection is gone
        if kind == "500":
            return web.json_response({"error": "injected fault"}, status=500)
        if kind in ("503", "429"):
            wait = "1" if kind == "503" else "0"
            document = {"error": "busy" if kind == "503" else "slow down"}
            return web.json_response(document, status=int(kind), headers={"Retry-After": wait})
        return web.json_response({"predictions": score(batch).tolist()})

    async def endless(request: web.Request) -> web.StreamResponse:
        await request.read()
        reply = web.StreamResponse(headers={"Content-Type": "application/json"})
        reply.enable_chunked_encoding()
        await reply.prepare(request)
        chunk = b'{"predictions": [' + b"[0.5, 0.5]," * 6000
        try:
            while not release.is_set():
                await reply.write(chunk)
                server.streamed += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        return reply

    async def redirect(request: web.Request) -> web.Response:
        await request.read()
        server.redirected.append(frozenset(name.lower() for name in request.headers))
        status = int(request.query.get("status", "307"))
        target = request.query.get("to", request.path_qs)  # no target: a redirect loop
        return web.Response(status=status, headers={"Location": target})

    async def v2_metadata(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        tensor = {"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}
        output = {"name": "logits", "datatype": "FP32", "shape": [-1, 10]}
        if name == "no-inputs":
            return web.json_response({"name": name, "outputs": [output]})
        return web.json_response({"name": name, "inputs": [tensor], "outputs": [output]})

    async def v2_infer(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await request.read()
        logits = {"name": "logits", "datatype": "FP32", "shape": [2, 10]}
        if name == "no-outputs":
            return web.json_response({"outputs": []})
        if name == "other-output":
            return web.json_response({"outputs": [{**logits, "name": "probs", "data": [0] * 20}]})
        if name == "bad-size":
            return web.json_response({"outputs": [{**logits, "data": [0.5] * 19}]})
        header = json.dumps({"outputs": [{**logits, "parameters": {"binary_data_size": 80}}]})
        return web.Response(
            body=header.encode() + bytes(40),  # short-binary: half of the announced bytes
            headers={"Inference-Header-Content-Length": str(len(header))},
        )

    async def slow(request: web.Request) -> web.Response:
        await read(request)
        await release.wait()  # set when the server stops; the client gives up first
        return web.json_response({"predictions": []})

    app = web.Application(client_max_size=512 * 1024**2)
    app.add_routes(
        [
            web.post("/rows", rows),
            web.post("/torchserve", torchserve),
            web.post("/custom", custom),
            web.post("/limited", limited),
            web.post("/auth", auth),
            web.post("/forbidden", forbidden),
            web.post("/error500", error500),
            web.post("/bad-request", bad_request),
            web.post("/malformed", malformed),
            web.post("/not-utf8", not_utf8),
            web.post("/wrong-shape", wrong_shape),
            web.post("/nan", nan),
            web.post("/flaky", flaky),
            web.post("/faulty", faulty),
            web.post("/endless", endless),
            web.route("*", "/redirect", redirect),
            web.post("/slow", slow),
            web.get("/v2/models/{name}", v2_metadata),
            web.post("/v2/models/{name}/infer", v2_infer),
        ]
    )
    return app


def _fault(n: int) -> str | None:
    """The fault ``/faulty`` injects into its n-th request (1-based), if any."""
    if n == 5 or n % 25 == 12:
        return "reset"
    if n % 10 == 0:
        return "500"
    if n == 3:
        return "503"
    if n % 10 == 7:
        return "429"
    return None


def _reset(request: web.Request) -> None:
    """Drop the connection with a TCP reset (SO_LINGER 0, then abort), as a crashing proxy does."""
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@contextmanager
def serving_http_apps(
    score: Scorer, *, token: str = "s3cret-token", tls: ssl.SSLContext | None = None
) -> Iterator[AppServer]:
    """Serve the test apps on 127.0.0.1 (port 0) from a thread until the block ends."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []
    holder: dict[str, Any] = {}

    async def start() -> None:
        release = asyncio.Event()
        server = AppServer(base_url="")
        runner = web.AppRunner(build_app(score, server, token, release))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        port = runner.addresses[0][1]
        server.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        holder.update(server=server, runner=runner, release=release)

    async def stop() -> None:
        holder["release"].set()
        await holder["runner"].cleanup()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(stop())

    thread = threading.Thread(target=run, name="http-test-apps", daemon=True)
    thread.start()
    try:
        if not ready.wait(timeout=30):
            raise RuntimeError("test HTTP apps did not start within 30 s")
        if failure:
            raise failure[0]
        yield holder["server"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()
