"""A real Open Inference Protocol (KServe v2) HTTP server that answers every request after a
fixed latency: what a fast model on a GPU server far away looks like to a client.

It stands in for a remote server, so it must cost the 2-core client machine as little as a
server elsewhere would: it runs in a process of its own on 127.0.0.1 (port 0) and speaks
HTTP/1.1 (keep-alive, ``Content-Length`` bodies) over asyncio's buffered protocol, receiving
each request body straight into one buffer (``recv_into``, as a C++ server like Triton does;
aiohttp's server copied a 4.8 MB body three more times in Python and cost 6.8 ms of CPU per
request against 2–3 ms now). Each request waits ``latency_s`` after it has arrived (requests
overlap, as they do on a network), then runs an onnxruntime session in a worker thread, one
model run at a time (a single-model server). It speaks v2 JSON and the binary tensor data
extension, publishes its metadata at ``GET /v2/models/{name}`` and prints the requests it held
at once (``max_active``) and its CPU time per request when it stops.

    with serving_v2("fast.onnx", latency_s=0.05) as server:
        backend = await open_backend(server.url, BackendSettings(options={"protocol": "v2-binary"}))
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from latency_backend import onnx_session

HEADER = "inference-header-content-length"
#: a binary tensor starts this aligned in its receive buffer
ALIGN_BYTES = 64
#: request line and headers, at most
HEAD_BYTES = 1 << 16
#: receive buffers kept for reuse (fresh ones cost page faults on every request)
POOLED_BUFFERS = 64


@dataclass
class V2Server:
    """A running server: its model URL and what it saw."""

    url: str = ""
    requests: int = 0
    active: int = 0
    max_active: int = 0


@dataclass
class Request:
    """One request as received: method, path, lower-cased headers and the body."""

    method: str
    path: str
    headers: dict[str, str]
    body: memoryview


def request_batch(request: Request) -> np.ndarray:
    """The input tensor of a v2 request (JSON ``data`` or the binary extension), no copy of
    a binary tensor."""
    length = request.headers.get(HEADER)
    if length is None:
        entry = json.loads(bytes(request.body))["inputs"][0]
        return np.asarray(entry["data"], dtype=np.float32).reshape(entry["shape"])
    split = int(length)
    entry = json.loads(bytes(request.body[:split]))["inputs"][0]
    return np.frombuffer(request.body[split:], dtype=np.float32).reshape(entry["shape"])


def response(status: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """An HTTP/1.1 response with ``body`` (kept alive)."""
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def json_response(document: Any, status: str = "200 OK") -> bytes:
    return response(status, json.dumps(document).encode(), {"Content-Type": "application/json"})


class BufferPool:
    """Receive buffers by size, reused once a request is answered."""

    def __init__(self) -> None:
        self._free: dict[int, list[np.ndarray]] = {}

    def take(self, size: int) -> np.ndarray:
        free = self._free.get(size)
        return free.pop() if free else np.empty(size, np.uint8)

    def give(self, buffer: np.ndarray) -> None:
        free = self._free.setdefault(buffer.size, [])
        if len(free) < POOLED_BUFFERS:
            free.append(buffer)


class Connection(asyncio.BufferedProtocol):
    """One client connection: parses request heads, receives bodies straight into a buffer
    from the pool and hands each complete request to ``handle`` (one at a time: HTTP/1.1
    without pipelining, as clients send)."""

    def __init__(
        self, handle: Callable[[Request], Any], pool: BufferPool, tasks: set[asyncio.Task]
    ) -> None:
        self._handle, self._pool, self._tasks = handle, pool, tasks
        self._head = memoryview(bytearray(HEAD_BYTES))
        self._head_filled = 0
        self._body: memoryview | None = None
        self._buffer: np.ndarray | None = None
        self._body_filled = 0
        self._request: Request | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._body is not None:
            return self._body[self._body_filled :]
        return self._head[self._head_filled :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._body is not None:
            self._body_filled += nbytes
            if self._body_filled == len(self._body):
                self._dispatch()
            return
        self._head_filled += nbytes
        self._parse_head()

    def _parse_head(self) -> None:
        data = bytes(self._head[: self._head_filled])
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if self._head_filled == HEAD_BYTES:
                self._fail("431 Request Header Fields Too Large")
            return
        lines = data[:end].decode("latin-1").split("\r\n")
        try:
            method, path, _ = lines[0].split(" ", 2)
            headers = dict(line.split(":", 1) for line in lines[1:])
        except ValueError:
            self._fail("400 Bad Request")
            return
        headers = {name.strip().lower(): value.strip() for name, value in headers.items()}
        if "chunked" in headers.get("transfer-encoding", ""):
            self._fail("411 Length Required")
            return
        length = int(headers.get("content-length", 0))
        rest = data[end + 4 :]
        if len(rest) > length:  # a pipelined request behind this one: not sent by clients
            self._fail("400 Bad Request")
            return
        split = int(headers.get(HEADER, 0))
        self._buffer = self._pool.take(length + ALIGN_BYTES)
        start = -(self._buffer.ctypes.data + split) % ALIGN_BYTES
        self._body = memoryview(self._buffer)[start : start + length]
        self._body[: len(rest)] = rest
        self._body_filled = len(rest)
        self._head_filled = 0
        self._request = Request(method, path, headers, self._body)
        if self._body_filled == length:
            self._dispatch()

    def _dispatch(self) -> None:
        request, buffer = self._request, self._buffer
        assert request is not None and buffer is not None
        self._body, self._buffer, self._request = None, None, None
        task = asyncio.get_running_loop().create_task(self._answer(request, buffer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: Request, buffer: np.ndarray) -> None:
        try:
            reply = await self._handle(request)
        except Exception as exc:  # a broken request gets a 500, not silence
            reply = json_response({"error": f"{type(exc).__name__}: {exc}"}, "500 Internal Error")
        finally:
            self._pool.give(buffer)  # the model has run: nothing reads the body any more
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)

    def _fail(self, status: str) -> None:
        if self.transport is not None:
            self.transport.write(response(status, b"", {"Connection": "close"}))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


@contextmanager
def serving_v2(model: str, latency_s: float, name: str = "fast") -> Iterator[V2Server]:
    """Serve ``model`` as v2 model ``name`` behind ``latency_s`` from a child process until
    the block ends."""
    command = [sys.executable, __file__, model, str(latency_s), name]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        url = child.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(f"the v2 server did not start: {url!r}")
        yield V2Server(url=url)
    finally:
        if child.stdin is not None:
            child.stdin.close()  # the child stops when its stdin closes
        child.wait(timeout=60)


@contextmanager
def serving_v2_here(model: str, latency_s: float, name: str = "fast") -> Iterator[V2Server]:
    """Serve ``model`` as v2 model ``name`` behind ``latency_s`` from a thread of this
    process until the block ends."""
    session = onnx_session(model)
    model_input, model_output = session.get_inputs()[0], session.get_outputs()[0]
    state = V2Server()
    compute = ThreadPoolExecutor(1)  # one model run at a time
    metadata = {
        "name": name,
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": model_input.name, "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
        "outputs": [{"name": model_output.name, "datatype": "FP32", "shape": [-1, 1000]}],
    }
    model_path = f"/v2/models/{name}"

    async def infer(request: Request) -> bytes:
        state.requests += 1
        state.active += 1
        state.max_active = max(state.max_active, state.active)
        try:
            await asyncio.sleep(latency_s)
            batch = request_batch(request)
            loop = asyncio.get_running_loop()
            scores = await loop.run_in_executor(
                compute, lambda: session.run(None, {model_input.name: batch})[0]
            )
        finally:
            state.active -= 1
        scores = np.ascontiguousarray(scores, dtype=np.float32)
        output = {"name": model_output.name, "datatype": "FP32", "shape": list(scores.shape)}
        if HEADER not in request.headers:
            output["data"] = scores.ravel().tolist()
            return json_response({"model_name": name, "outputs": [output]})
        output["parameters"] = {"binary_data_size": scores.nbytes}
        header = json.dumps({"model_name": name, "outputs": [output]}).encode()
        headers = {HEADER: str(len(header)), "Content-Type": "application/octet-stream"}
        return response("200 OK", header + scores.tobytes(), headers)

    async def handle(request: Request) -> bytes:
        if request.method == "GET" and request.path == model_path:
            return json_response(metadata)
        if request.method == "POST" and request.path == f"{model_path}/infer":
            return await infer(request)
        return json_response(
            {"error": f"no route {request.method} {request.path}"}, "404 Not Found"
        )

    loop = asyncio.new_event_loop()
    pool = BufferPool()
    tasks: set[asyncio.Task] = set()
    servers: list[asyncio.Server] = []

    async def start() -> None:
        server = await loop.create_server(lambda: Connection(handle, pool, tasks), "127.0.0.1", 0)
        servers.append(server)
        state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}{model_path}"

    async def stop() -> None:
        servers[0].close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=60)
    try:
        yield state
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=60)
        loop.close()
        compute.shutdown()


if __name__ == "__main__":
    with serving_v2_here(sys.argv[1], float(sys.argv[2]), sys.argv[3]) as running:
        ready_cpu_s = time.process_time()
        print(running.url, flush=True)
        sys.stdin.read()  # until the parent closes it
        cpu_s = time.process_time() - ready_cpu_s
        print(
            f"v2 server: max_active {running.max_active}, requests {running.requests}, "
            f"CPU {cpu_s:.2f} s ({cpu_s / max(1, running.requests) * 1e3:.2f} ms per request)",
            file=sys.stderr,
        )
