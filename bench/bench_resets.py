"""What connection resets cost a run (issue 27, item 20: "10 % resets made a run 17× slower").

    python bench/bench_resets.py [--iters 8] [--latency-ms 20] [--every 10]

One seeded explanation of a 32×32 picture (the tests' tiny CNN, scored by onnxruntime in a
real aiohttp server on 127.0.0.1, ``latency-ms`` per request) through the HTTP backend with 8
calls in flight: on a clean route, and on a route that resets the TCP connection of every
``every``-th request. Each is run twice: as the code is (a reset retries its own call), and
with a reset treated as "the server is gone" (every call in flight abandoned and re-sent:
the behaviour before this change, patched in). Prints wall times, requests sent, the
slowdown ratios and whether the maps are identical.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import anyio
import numpy as np
import onnxruntime as ort
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rex_stream import ExplainConfig, explain  # noqa: E402
from rex_stream.adapters.http import transport  # noqa: E402
from rex_stream.engine.backend import BackendSettings  # noqa: E402
from rex_stream.errors import TransientBackendError  # noqa: E402
from tests.onnx_models import save_tiny_cnn  # noqa: E402
from tests.servers.http_apps import _reset  # noqa: E402


def picture() -> np.ndarray:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 60, size=(32, 32, 3), dtype=np.uint8)
    pixels[8:20, 12:26] = (230, 40, 40)
    return pixels.transpose(2, 0, 1).astype(np.float32)


async def run_once(session: ort.InferenceSession, resets: int, latency_s: float, iters: int,
                   old: bool) -> tuple[float, int, np.ndarray]:  # fmt: skip
    served = {"n": 0}

    async def rows(request: web.Request) -> web.Response:
        document = await request.json()
        served["n"] += 1
        if resets and served["n"] % resets == 0:
            _reset(request)
            return web.Response()
        await asyncio.sleep(latency_s)
        batch = np.asarray(document["instances"], dtype=np.float32)
        return web.json_response({"predictions": session.run(None, {"input": batch})[0].tolist()})

    app = web.Application(client_max_size=256 * 2**20)
    app.add_routes([web.post("/rows", rows)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/rows"
    config = ExplainConfig().with_overrides(iters=iters, seed=3, max_inflight=8, max_batch=8)
    settings = BackendSettings(input_shape=(3, 32, 32), max_inflight=8)
    original = transport._exchange_error

    def as_before(exc, url, where):  # type: ignore[no-untyped-def]
        error = original(exc, url, where)
        if isinstance(error, TransientBackendError) and "dropped the connection" in str(error):
            error.unreachable = True  # the old mapping: a reset meant "the server is gone"
        return error

    try:
        with mock.patch.object(transport, "_exchange_error", as_before) if old else _nothing():
            started = time.perf_counter()
            result = await explain(picture(), url, config, backend_settings=settings)
            wall = time.perf_counter() - started
    finally:
        await runner.cleanup()
    return wall, served["n"], result.responsibility


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--every", type=int, default=10, help="reset every N-th request")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model = save_tiny_cnn(Path(folder) / "tiny.onnx")
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        rows = {}
        for name, resets, old in (("clean", 0, False), ("resets, now", args.every, False),
                                  ("resets, before", args.every, True)):  # fmt: skip
            runs = [
                anyio.run(run_once, session, resets, args.latency_ms / 1000, args.iters, old)
                for _ in range(args.repeats)
            ]
            rows[name] = (statistics.median(r[0] for r in runs), runs[0][1], runs[0][2])
    clean = rows["clean"][0]
    print(f"{args.iters} iterations, {args.latency_ms:g} ms per request, a reset every "
          f"{args.every}th request, median of {args.repeats}")  # fmt: skip
    print(f"{'route':16} {'wall s':>8} {'requests':>9} {'÷ clean':>8}  same map")
    for name, (wall, requests, found) in rows.items():
        same = bool(np.array_equal(found, rows["clean"][2]))
        print(f"{name:16} {wall:8.2f} {requests:9d} {wall / clean:8.2f}  {same}")
    print(f"before ÷ now: {rows['resets, before'][0] / rows['resets, now'][0]:.2f}")


if __name__ == "__main__":
    main()
