"""Client CPU time per mutant (process CPU, not wall: the machine may be shared).

    python bench/bench_cpu_per_mutant.py [--images dog ladybird] [--repeat 3]

For each photo, rex-stream explains it (fast ImageNet-shaped model, 20 iterations, seed 42,
batch 8 from 8 calls in flight) through:

1. a real Open Inference Protocol v2 HTTP server in a child process (binary tensors,
   ``bench/latency_v2_server.py``): the model runs in the child, so this process's CPU time is
   the client's alone (search, fills, encoding, HTTP, bookkeeping);
2. a ``python:`` backend running the same model in this process (``bench/latency_backend.py``):
   CPU time includes the model.

It prints ms of this process's CPU per mutant (best of ``--repeat``) and a digest of the map,
so that a change can be checked to keep results identical. Then two micro-benchmarks of the
per-batch hot spot: the v2 binary encode of a batch of 8.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fast_model import save_fast_model
from latency_backend import latency_onnx_backend
from latency_v2_server import serving_v2

from rex_stream import ExplainConfig, explain
from rex_stream.engine.backend import BackendSettings, open_backend

HERE = Path(__file__).resolve().parent
DATA = next(p / "shared" / "data" for p in HERE.parents if (p / "shared" / "data").is_dir())
MEANS = (0.485, 0.456, 0.406)
STDS = (0.229, 0.224, 0.225)


async def one_run(options: argparse.Namespace, image: Path, backend) -> tuple[float, int, str]:
    """(CPU seconds of this process, mutants, digest of map and mask) for one explanation."""
    config = ExplainConfig().with_overrides(
        iters=options.iters,
        seed=42,
        means=MEANS,
        stds=STDS,
        max_batch=8,
        max_inflight=8,
        analyse=False,
    )
    start = time.process_time()
    result = await explain(image, backend, config)
    cpu = time.process_time() - start
    digest = (
        f"{float(np.sum(result.responsibility, dtype=np.float64)):.6f}/{int(result.mask.sum())}"
    )
    return cpu, result.stats.queries, digest


async def measure(options: argparse.Namespace, image: Path, model: Path, kind: str):
    best, digests, queries = float("inf"), set(), 0
    for _ in range(options.repeat):
        if kind == "http":
            with serving_v2(str(model), options.latency_ms / 1000) as server:
                settings = BackendSettings(max_inflight=8, options={"protocol": "v2-binary"})
                backend = await open_backend(server.url, settings)
                await backend.infer(np.zeros((8, 3, 224, 224), np.float32))
                try:
                    cpu, queries, digest = await one_run(options, image, backend)
                finally:
                    await backend.aclose()
        else:
            backend = latency_onnx_backend(
                str(model), options.latency_ms / 1000, max_batch=8, max_inflight=8
            )
            await backend.infer(np.zeros((8, 3, 224, 224), np.float32))
            try:
                cpu, queries, digest = await one_run(options, image, backend)
            finally:
                await backend.aclose()
        best = min(best, cpu)
        digests.add(digest)
    return best, queries, digests


def micro() -> float:
    """ms of CPU per v2 binary encode of 8 × 3 × 224 × 224 FP32."""
    from rex_stream.adapters.http.v2 import V2Codec, V2Tensor

    codec = V2Codec(V2Tensor("x", "FP32", (-1, 3, 224, 224)), "y", binary=True)
    batch = np.random.default_rng(0).random((8, 3, 224, 224), dtype=np.float32)
    start, n = time.process_time(), 50
    for _ in range(n):
        codec.encode(batch)
    return (time.process_time() - start) / n * 1000


def rex_like_ledgers(iterations: int = 20, size: int = 224, depth: int = 4) -> list:
    """Ledgers shaped like ReX's: each iteration splits the image at random points into 4
    boxes, each box into 4 again, ``depth`` levels deep, every box with some responsibility."""
    from rex_stream.causal.responsibility import Ledger

    rng = np.random.default_rng(0)
    ledgers = []
    for _ in range(iterations):
        boxes, level = [], [((0, 0), (size, size))]
        for _ in range(depth):
            children = []
            for (y0, x0), (y1, x1) in level:
                if y1 - y0 < 2 or x1 - x0 < 2:
                    continue
                ym, xm = int(rng.integers(y0 + 1, y1)), int(rng.integers(x0 + 1, x1))
                children += [
                    ((y0, x0), (ym, xm)),
                    ((y0, xm), (ym, x1)),
                    ((ym, x0), (y1, xm)),
                    ((ym, xm), (y1, x1)),
                ]
            boxes += children
            level = children
        start = np.array([b[0] for b in boxes], np.int64)
        stop = np.array([b[1] for b in boxes], np.int64)
        ledgers.append(
            Ledger(start, stop, np.ones(len(boxes), np.int64), rng.random(len(boxes)) / 4)
        )
    return ledgers


def micro_map() -> tuple[float, str]:
    """ms of CPU per multiplicative and additive map of 20 ReX-like ledgers over 224 × 224."""
    from rex_stream.causal.responsibility import build_map
    from rex_stream.config import ResponsibilityStyle

    ledgers = rex_like_ledgers()
    start, n = time.process_time(), 5
    for _ in range(n):
        sums = [
            float(build_map(ledgers, 1, (224, 224), style).sum()) for style in ResponsibilityStyle
        ]
    digest = " ".join(f"{total:.12g}" for total in sums)
    return (time.process_time() - start) / n * 1000, digest


async def main_async(options: argparse.Namespace) -> None:
    model = save_fast_model(Path(tempfile.mkdtemp(prefix="fastmodel")) / "fast.onnx")
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()}; {options.latency_ms:g} ms per call")
    for name in options.images:
        image = DATA / "images" / f"{name}.jpg"
        for kind in ("http", "python"):
            cpu, queries, digests = await measure(options, image, model, kind)
            print(
                f"{name:<9} {kind:<7} mutants {queries:5d}  CPU {cpu:6.2f} s  "
                f"{cpu / queries * 1000:6.3f} ms/mutant  map {sorted(digests)}  "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    encode_ms = micro()
    print(f"v2 binary encode, batch 8: {encode_ms:.3f} ms CPU per batch")
    map_ms, digest = micro_map()
    print(
        f"maps of 20 ReX-like ledgers (340 boxes each), both styles: {map_ms:.2f} ms CPU ({digest})"
    )
    print(f"load at the end: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=["dog", "ladybird"])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    anyio.run(main_async, parser.parse_args())


if __name__ == "__main__":
    main()
