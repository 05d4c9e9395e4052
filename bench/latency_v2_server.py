"""A real Open Inference Protocol (KServe v2) HTTP server that answers every request after a
fixed latency: what a fast model on a GPU server far away looks like to a client.

The server is aiohttp on 127.0.0.1 (port 0) in a process of its own (so its CPU time and the
client's do not share one interpreter, as with a real remote server). Each request
waits ``latency_s`` (requests overlap, as they do on a network), then runs an onnxruntime
session in a worker thread, one model run at a time (a single-model server). It speaks v2 JSON
and the binary tensor data extension, publishes its metadata at ``GET /v2/models/{name}`` and
prints the requests it held at once (``max_active``) when it stops.

    with serving_v2("fast.onnx", latency_s=0.05) as server:
        backend = await open_backend(server.url, BackendSettings(options={"protocol": "v2-binary"}))
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from aiohttp import web
from latency_backend import onnx_session

HEADER = "Inference-Header-Content-Length"
DATATYPES = {"FP32": np.float32}


@dataclass
class V2Server:
    """A running server: its model URL and what it saw."""

    url: str = ""
    requests: int = 0
    active: int = 0
    max_active: int = 0


def _request_batch(body: bytes, headers: dict[str, str] | web.BaseRequest) -> np.ndarray:
    length = headers.get(HEADER)  # type: ignore[union-attr]
    if length is None:
        entry = json.loads(body)["inputs"][0]
        return np.asarray(entry["data"], dtype=np.float32).reshape(entry["shape"])
    split = int(length)
    entry = json.loads(body[:split])["inputs"][0]
    return np.frombuffer(body[split:], dtype=np.float32).reshape(entry["shape"])


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

    async def describe(request: web.Request) -> web.Response:
        return web.json_response(metadata)

    async def infer(request: web.Request) -> web.Response:
        state.requests += 1
        state.active += 1
        state.max_active = max(state.max_active, state.active)
        try:
            body = await request.read()
            await asyncio.sleep(latency_s)
            batch = _request_batch(body, request.headers)
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
            return web.json_response({"model_name": name, "outputs": [output]})
        output["parameters"] = {"binary_data_size": scores.nbytes}
        header = json.dumps({"model_name": name, "outputs": [output]}).encode()
        return web.Response(
            body=header + scores.tobytes(),
            headers={HEADER: str(len(header)), "Content-Type": "application/octet-stream"},
        )

    loop = asyncio.new_event_loop()
    runner: list[web.AppRunner] = []

    async def start() -> None:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_get(f"/v2/models/{name}", describe)
        app.router.add_post(f"/v2/models/{name}/infer", infer)
        runner.append(web.AppRunner(app, access_log=None))
        await runner[0].setup()
        await web.TCPSite(runner[0], "127.0.0.1", 0).start()
        state.url = f"http://127.0.0.1:{runner[0].addresses[0][1]}/v2/models/{name}"

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=60)
    try:
        yield state
    finally:
        asyncio.run_coroutine_threadsafe(runner[0].cleanup(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=60)
        loop.close()
        compute.shutdown()


if __name__ == "__main__":
    with serving_v2_here(sys.argv[1], float(sys.argv[2]), sys.argv[3]) as running:
        print(running.url, flush=True)
        sys.stdin.read()  # until the parent closes it
        print(f"max_active {running.max_active}, requests {running.requests}", file=sys.stderr)
