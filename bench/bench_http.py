"""Throughput of the HTTP backend: rex-stream ÷ a raw aiohttp client, v2 JSON vs v2 binary.

Starts a real Triton server (PyTriton, from the environment named by REX_STREAM_TRITON_PYTHON)
serving an ONNX classifier on 127.0.0.1; its HTTP port speaks the Open Inference Protocol.
Measured in the same run, interleaved, at the same batch size and concurrency:

- raw: ``concurrency`` tasks each looping a hand-written aiohttp POST to ``…/infer`` (one
  session, pool of ``concurrency``): encode the batch, send, decode the output tensor. This is
  the best a plain client gets at that batch size and concurrency;
- raw-prebuilt: the same, but the request body is built once and the reply is not decoded
  (the transport alone: an upper bound no real client reaches);
- adapter: the same loop through ``HttpBackend.infer`` (what the adapter adds);
- scheduler: searches submitting 14-mutant split steps to rex-stream's Scheduler, which fills
  batches of ``batch`` and keeps ``concurrency`` calls in flight (how rex-stream drives it).

Rates are mutants (inputs scored) per second; ratios are to ``raw`` over the same protocol.

    REX_STREAM_TRITON_PYTHON=/work/tritonvenv/bin/python \\
        python bench/bench_http.py --model tiny --batch 64 --concurrency 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import anyio
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rex_stream.config import SchedulerConfig  # noqa: E402
from rex_stream.engine.backend import BackendSettings, open_backend  # noqa: E402
from rex_stream.engine.scheduler import Scheduler  # noqa: E402
from tests.plugins.triton_fixtures import DEMO_MODEL, build_tiny_classifier  # noqa: E402
from tests.servers.triton_server import running_triton  # noqa: E402

MUTANTS_PER_STEP = 14
HEADER = "Inference-Header-Content-Length"


async def measure(loop_once: Callable[[], Awaitable[int]], workers: int, seconds: float) -> float:
    """Mutants/s of ``workers`` tasks repeating ``loop_once`` (returns mutants done) for a while."""
    done = 0
    deadline = 0.0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            # Not ``done += await …``: that reads ``done`` before awaiting and loses the
            # other workers' updates made meanwhile.
            count = await loop_once()
            done += count

    await loop_once()  # warm-up: connections, first allocations
    started = time.perf_counter()
    deadline = started + seconds
    async with anyio.create_task_group() as group:
        for _ in range(workers):
            group.start_soon(worker)
    return done / (time.perf_counter() - started)


def encode(batch: np.ndarray, binary: bool) -> tuple[bytes, dict[str, str]]:
    """The v2 request a hand-written client sends."""
    entry: dict[str, object] = {"name": "input", "shape": list(batch.shape), "datatype": "FP32"}
    if not binary:
        entry["data"] = batch.ravel().tolist()
        document = {"inputs": [entry], "outputs": [{"name": "logits"}]}
        body = json.dumps(document, separators=(",", ":")).encode()
        return body, {"Content-Type": "application/json"}
    entry["parameters"] = {"binary_data_size": batch.nbytes}
    output = {"name": "logits", "parameters": {"binary_data": True}}
    header = json.dumps({"inputs": [entry], "outputs": [output]}, separators=(",", ":")).encode()
    return header + batch.tobytes(), {HEADER: str(len(header))}


def decode(body: bytes, headers: object, binary: bool) -> np.ndarray:
    """The output tensor of a v2 reply (one output, as requested)."""
    if not binary:
        output = json.loads(body)["outputs"][0]
        return np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
    split = int(headers[HEADER])  # type: ignore[index]
    output = json.loads(body[:split])["outputs"][0]
    return np.frombuffer(body[split:], dtype=np.float32).reshape(output["shape"])


async def raw_rate(url: str, batch: np.ndarray, binary: bool, prebuilt: bool, args) -> float:  # type: ignore[no-untyped-def]
    """A plain aiohttp client: fixed batch, ``concurrency`` loops over one pooled session."""
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    body, headers = encode(batch, binary)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def once() -> int:
            data, extra = (body, headers) if prebuilt else encode(batch, binary)
            async with session.post(url + "/infer", data=data, headers=extra) as reply:
                payload = await reply.read()
                if reply.status != 200:
                    raise RuntimeError(f"{reply.status}: {payload[:200]!r}")
                if prebuilt:
                    return len(batch)
                return int(decode(payload, reply.headers, binary).shape[0])

        return await measure(once, args.concurrency, args.seconds)


async def adapter_rate(url: str, batch: np.ndarray, protocol: str, args) -> float:  # type: ignore[no-untyped-def]
    """``HttpBackend.infer`` on the fixed batch, ``concurrency`` loops."""
    options = {"protocol": protocol}
    settings = BackendSettings(timeout_s=60, max_inflight=args.concurrency, options=options)
    backend = await open_backend(url, settings)

    async def once() -> int:
        return int((await backend.infer(batch)).shape[0])

    try:
        return await measure(once, args.concurrency, args.seconds)
    finally:
        await backend.aclose()


async def scheduler_rate(url: str, batch: np.ndarray, protocol: str, args) -> float:  # type: ignore[no-untyped-def]
    """Searches submitting 14-mutant steps through the Scheduler to the HTTP backend."""
    options = {"protocol": protocol}
    settings = BackendSettings(timeout_s=60, max_inflight=args.concurrency, options=options)
    backend = await open_backend(url, settings)
    config = SchedulerConfig(
        max_batch=args.batch, max_inflight=args.concurrency, linger_ms=args.linger_ms
    )
    fills = [lambda out, r=r: np.copyto(out, r) for r in list(batch)[:MUTANTS_PER_STEP]]
    searches = max(args.concurrency * -(-args.batch // MUTANTS_PER_STEP) * 2, 8)
    try:
        async with Scheduler(backend, config) as scheduler:

            async def once() -> int:
                return int((await scheduler.evaluate(fills)).shape[0])

            return await measure(once, searches, args.seconds)
    finally:
        await backend.aclose()


def make_model(kind: str, directory: Path) -> tuple[Path, tuple[int, ...]]:
    """The ONNX file to serve and its input shape."""
    if kind == "demo":
        return DEMO_MODEL, (3, 224, 224)
    return build_tiny_classifier(directory / "tiny.onnx"), (3, 32, 32)


def main() -> None:
    """Run the benchmark and print a table of rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "demo"], default="tiny")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--linger-ms", type=float, default=2.0)
    parser.add_argument("--protocols", default="v2-binary,v2-json", help="comma-separated")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_path, shape = make_model(args.model, Path(tmp))
        batch = np.random.default_rng(0).random((args.batch, *shape), dtype=np.float32)
        with running_triton(model_path, max_batch_size=args.batch, model_name="bench") as server:
            url = f"http://{server.http_url}/v2/models/bench"
            print(
                f"model={args.model} input={shape} batch={args.batch} "
                f"concurrency={args.concurrency} seconds={args.seconds} repeats={args.repeats}"
            )
            columns = ("raw/s", "prebuilt/s", "adapter/s", "sched/s")
            ratios = ("adapter÷raw", "sched÷raw", "raw÷prebuilt")
            print(
                f"{'protocol':<10}", *(f"{c:>10}" for c in columns), *(f"{c:>12}" for c in ratios)
            )
            for protocol in args.protocols.split(","):
                binary = protocol == "v2-binary"
                rates: dict[str, list[float]] = {k: [] for k in ("raw", "pre", "ad", "sch")}
                for _ in range(args.repeats):  # interleaved, so drift hits all alike
                    rates["raw"].append(anyio.run(raw_rate, url, batch, binary, False, args))
                    rates["pre"].append(anyio.run(raw_rate, url, batch, binary, True, args))
                    rates["ad"].append(anyio.run(adapter_rate, url, batch, protocol, args))
                    rates["sch"].append(anyio.run(scheduler_rate, url, batch, protocol, args))
                r, p, a, s = (statistics.median(v) for v in rates.values())
                print(
                    f"{protocol:<10}",
                    *(f"{v:10.0f}" for v in (r, p, a, s)),
                    *(f"{v:12.3f}" for v in (a / r, s / r, r / p)),
                )


if __name__ == "__main__":
    main()
