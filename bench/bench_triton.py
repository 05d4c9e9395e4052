"""Throughput of the Triton backend: rex-stream ÷ raw tritonclient, gRPC vs HTTP vs shared memory.

Starts a real Triton server (PyTriton, from the environment named by REX_STREAM_TRITON_PYTHON)
serving an ONNX classifier on 127.0.0.1, then measures, in the same run and interleaved:

- raw: ``concurrency`` tasks each looping ``tritonclient.*.aio`` ``infer`` on a fixed batch
  (the best a hand-written client gets at that batch size and concurrency);
- adapter: the same loop through ``TritonBackend.infer`` (adapter overhead only);
- scheduler: many searches submitting 14-mutant split steps to rex-stream's Scheduler, which
  materialises rows into its buffers, coalesces them into batches of ``batch`` and keeps
  ``concurrency`` backend calls in flight (how rex-stream really drives a backend).

Each is reported in mutants/s and as a ratio to raw over the same protocol (sockets).
Shared-memory rows show whether system shared memory pays off against the socket path.

    REX_STREAM_TRITON_PYTHON=/work/tritonvenv/bin/python \\
        python bench/bench_triton.py --model tiny --batch 64 --concurrency 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

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


Rate = tuple[float, float]  # (mutants/s, client CPU µs per mutant)


async def measure(loop_once: Callable[[], Awaitable[int]], workers: int, seconds: float) -> Rate:
    """Mutants/s of ``workers`` tasks repeating ``loop_once`` (returns mutants done) for a while,
    and this process's CPU time per mutant (all threads: event loop, gRPC, fill threads)."""
    done = 0
    deadline = 0.0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            finished = await loop_once()  # not `done += await …`: that reads `done` too early
            done += finished

    await loop_once()  # warm-up: connections, first-batch allocations
    started, cpu_started = time.perf_counter(), time.process_time()
    deadline = started + seconds
    async with anyio.create_task_group() as group:
        for _ in range(workers):
            group.start_soon(worker)
    cpu_us = (time.process_time() - cpu_started) / max(done, 1) * 1e6
    return done / (time.perf_counter() - started), cpu_us


async def raw_rate(protocol: str, url: str, model: str, batch: np.ndarray, args) -> Rate:  # type: ignore[no-untyped-def]
    """A plain tritonclient asyncio client, fixed batch, ``concurrency`` loops."""
    if protocol == "grpc":
        import tritonclient.grpc.aio as client_module

        client = client_module.InferenceServerClient(url)
    else:
        import tritonclient.http.aio as client_module  # type: ignore[no-redef]

        client = client_module.InferenceServerClient(url, conn_limit=args.concurrency * 2)
    binary = {} if protocol == "grpc" else {"binary_data": True}

    async def once() -> int:
        model_input = client_module.InferInput("input", list(batch.shape), "FP32")
        model_input.set_data_from_numpy(batch, **binary)
        output = client_module.InferRequestedOutput("logits", **binary)
        result = await client.infer(model, [model_input], outputs=[output])
        return int(result.as_numpy("logits").shape[0])

    try:
        return await measure(once, args.concurrency, args.seconds)
    finally:
        await client.close()


async def adapter_rate(spec: str, batch: np.ndarray, args, options: dict[str, str]) -> Rate:  # type: ignore[no-untyped-def]
    """``TritonBackend.infer`` on the fixed batch, ``concurrency`` loops."""
    settings = BackendSettings(timeout_s=60, max_inflight=args.concurrency, options=options)
    backend = await open_backend(spec, settings)

    async def once() -> int:
        return int((await backend.infer(batch)).shape[0])

    try:
        return await measure(once, args.concurrency, args.seconds)
    finally:
        await backend.aclose()


async def scheduler_rate(spec: str, batch: np.ndarray, args, options: dict[str, str]) -> Rate:  # type: ignore[no-untyped-def]
    """Searches submitting 14-mutant steps through the Scheduler to the Triton backend."""
    settings = BackendSettings(timeout_s=60, max_inflight=args.concurrency, options=options)
    backend = await open_backend(spec, settings)
    config = SchedulerConfig(
        max_batch=args.batch, max_inflight=args.concurrency, linger_ms=args.linger_ms
    )
    rows = list(batch)
    fills = [lambda out, r=r: np.copyto(out, r) for r in rows[:MUTANTS_PER_STEP]]
    # Enough concurrent searches to keep every in-flight batch full.
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
    parser.add_argument(
        "--modes", default="grpc,http,grpc+shm,http+shm", help="comma-separated subset"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_path, shape = make_model(args.model, Path(tmp))
        batch = np.random.default_rng(0).random((args.batch, *shape), dtype=np.float32)
        token = "bench-token"
        with running_triton(
            model_path, max_batch_size=args.batch, model_name="bench", access_token=token
        ) as server:
            os.environ["REX_STREAM_BENCH_TOKEN"] = token
            urls = {"grpc": server.grpc_url, "http": server.http_url}
            schemes = {"grpc": "triton", "http": "triton+http"}
            print(
                f"model={args.model} input={shape} batch={args.batch} "
                f"concurrency={args.concurrency} seconds={args.seconds} repeats={args.repeats}"
            )
            print(
                f"{'mode':<10} {'raw/s':>8} {'adapter/s':>9} {'sched/s':>8} {'adapter÷raw':>11} "
                f"{'sched÷raw':>9}   client CPU µs/mutant raw/adapter/sched"
            )
            for mode in args.modes.split(","):
                protocol, _, extra = mode.partition("+")
                options = {"token_env": "REX_STREAM_BENCH_TOKEN", "auth": "triton"}
                if extra == "shm":
                    options["shared_memory"] = "system"
                spec = f"{schemes[protocol]}://{urls[protocol]}/bench"
                raw, adapter, sched = [], [], []
                for _ in range(args.repeats):  # interleaved, so drift hits all three alike
                    raw.append(anyio.run(raw_rate, protocol, urls[protocol], "bench", batch, args))
                    adapter.append(anyio.run(adapter_rate, spec, batch, args, options))
                    sched.append(anyio.run(scheduler_rate, spec, batch, args, options))
                r, a, s = (statistics.median(x[0] for x in v) for v in (raw, adapter, sched))
                cr, ca, cs = (statistics.median(x[1] for x in v) for v in (raw, adapter, sched))
                print(
                    f"{mode:<10} {r:8.0f} {a:9.0f} {s:8.0f} {a / r:11.3f} {s / r:9.3f}   "
                    f"{cr:6.1f} / {ca:6.1f} / {cs:6.1f}"
                )


if __name__ == "__main__":
    main()
