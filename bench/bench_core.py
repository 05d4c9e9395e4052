"""Core benchmark: scheduler efficiency, latency hiding, peak RSS (issue 2).

    python bench/bench_core.py [--image PHOTO] [--model MODEL.onnx] [--iters 20] [--latency-ms 20]

(a) efficiency = mutants/s through rex-stream ÷ raw onnxruntime throughput at the same batch
    size and concurrency (2 threads calling the same session), measured in this process;
(b) latency hiding = wall time of the explanation behind a backend that adds ``latency-ms`` per
    call ÷ wall time of the same explanation with no added latency;
(c) peak RSS of the process.
"""

from __future__ import annotations

import argparse
import resource
import threading
import time
from pathlib import Path

import anyio
import numpy as np

from rex_stream import ExplainConfig, explain
from rex_stream.adapters.onnx import OnnxBackend
from rex_stream.adapters.python import PythonBackend
from rex_stream.cli.demo import DEMO_MODEL, IMAGENET_MEANS, IMAGENET_STDS
from rex_stream.engine.backend import BackendSettings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "images" / "dog.jpg"


def config(iters: int, batch: int, inflight: int) -> ExplainConfig:
    """ImageNet normalisation, fixed seed, the given batch and concurrency."""
    return ExplainConfig().with_overrides(
        means=IMAGENET_MEANS,
        stds=IMAGENET_STDS,
        seed=0,
        iters=iters,
        max_batch=batch,
        max_inflight=inflight,
    )


def raw_throughput(backend: OnnxBackend, batch: int, inflight: int, seconds: float = 8.0) -> float:
    """Inputs per second through the bare session at this batch size, with ``inflight``
    threads calling it at once (the concurrency the scheduler uses)."""
    data = np.random.default_rng(0).normal(size=(batch, *backend.info.input_shape))
    data = data.astype(np.float32)
    backend.infer_blocking(data)
    done = [0] * inflight
    started = time.perf_counter()

    def loop(slot: int) -> None:
        while time.perf_counter() - started < seconds:
            backend.infer_blocking(data)
            done[slot] += batch

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(inflight)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - started)


def delayed(backend: OnnxBackend, latency_s: float, inflight: int) -> PythonBackend:
    """The same session behind an artificial per-call latency (a remote server)."""

    async def score(batch: np.ndarray) -> np.ndarray:
        await anyio.sleep(latency_s)
        return await anyio.to_thread.run_sync(backend.infer_blocking, batch)

    return PythonBackend(score, backend.info.input_shape, name="delayed", max_inflight=inflight)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image", default=str(DEFAULT_IMAGE))
    parser.add_argument("--model", default=str(DEMO_MODEL))
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()

    backend = OnnxBackend(Path(args.model), BackendSettings(max_inflight=2))
    raw = raw_throughput(backend, args.batch, inflight=2)
    result = await explain(args.image, backend, config(args.iters, args.batch, 2))
    through = result.stats.queries / result.stats.wall_s
    print(
        f"(a) ONNX, batch {args.batch}: raw {raw:.1f} inputs/s, through rex-stream "
        f"{through:.1f} mutants/s ({result.stats.queries} queries, mean batch "
        f"{result.stats.mean_batch}) -> efficiency {through / raw:.3f}"
    )

    zero = await explain(args.image, delayed(backend, 0.0, 8), config(args.iters, args.batch, 8))
    slow = await explain(
        args.image, delayed(backend, args.latency_ms / 1000, 8), config(args.iters, args.batch, 8)
    )
    assert np.array_equal(zero.responsibility, slow.responsibility)
    print(
        f"(b) {args.iters} iterations: 0 ms {zero.stats.wall_s:.2f} s, {args.latency_ms:.0f} ms "
        f"{slow.stats.wall_s:.2f} s ({slow.stats.calls} calls) -> latency hiding "
        f"{slow.stats.wall_s / zero.stats.wall_s:.3f}"
    )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(c) peak RSS {peak_mib:.0f} MiB")


if __name__ == "__main__":
    anyio.run(main)
