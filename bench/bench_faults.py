"""Cost of riding through server faults (issue 14, item 7).

    python bench/bench_faults.py [--mutants 40000] [--repeats 5] [--iters 4]

(a) overhead: mutants per CPU second through the Scheduler behind a backend that answers at
    once (an async function returning zeros, so the per-call machinery is all that is measured),
    with the retry wrapper (``retry_s`` 120) and without it (``retry_s`` 0 bypasses it),
    interleaved;
(b) ride-through: wall time of the same seeded explanation through a real aiohttp server on
    127.0.0.1 (the tests' apps, tiny model) on ``/rows`` (clean) and ``/faulty`` (500 every
    tenth request, a 503 with Retry-After: 1, 429s and TCP resets); the maps are compared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import anyio
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rex_stream import ExplainConfig, explain  # noqa: E402
from rex_stream.adapters.python import PythonBackend  # noqa: E402
from rex_stream.config import SchedulerConfig  # noqa: E402
from rex_stream.engine.backend import BackendSettings, open_backend  # noqa: E402
from rex_stream.engine.scheduler import Scheduler  # noqa: E402


async def _zeros(batch: np.ndarray) -> np.ndarray:
    return np.zeros((len(batch), 10), dtype=np.float32)


async def scheduler_rate(mutants: int, retry_s: float) -> float:
    """Mutants per CPU second (this process, all threads: the machine may be shared) of 64
    concurrent searches submitting 14-mutant steps through one scheduler."""
    backend = PythonBackend(_zeros, (3, 8, 8), max_inflight=2)
    config = SchedulerConfig(max_batch=8, max_inflight=2, linger_ms=0, retry_s=retry_s)
    steps = mutants // 14

    def fill(row: np.ndarray) -> None:
        row.fill(1.0)

    async with Scheduler(backend, config) as scheduler:
        started = time.process_time()
        remaining = steps

        async def search() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await scheduler.evaluate([fill] * 14)

        async with anyio.create_task_group() as group:
            for _ in range(64):
                group.start_soon(search)
        return steps * 14 / (time.process_time() - started)


async def ride_through(iters: int) -> tuple[float, float, bool, dict[str, int]]:
    """Wall seconds of a clean and a faulty run, whether their maps are equal, faults made."""
    import onnxruntime as ort

    from tests.plugins.triton_fixtures import build_tiny_classifier
    from tests.servers.http_apps import serving_http_apps

    model = build_tiny_classifier(Path("/tmp/bench-faults-tiny.onnx"))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(7).random((3, 32, 32), dtype=np.float32)
    config = ExplainConfig().with_overrides(iters=iters, seed=11, min_box_size=4)
    settings = BackendSettings(
        timeout_s=20, max_inflight=2, input_shape=(3, 32, 32), options={"max_batch": "2"}
    )
    maps, walls = [], []
    with serving_http_apps(lambda x: session.run(None, {"input": x})[0]) as apps:
        for route in ("/rows", "/faulty?key=bench"):
            backend = await open_backend(apps.url(route), settings)
            try:
                started = time.perf_counter()
                result = await explain(image, backend, config)
                walls.append(time.perf_counter() - started)
                maps.append(result.responsibility)
            finally:
                await backend.aclose()
        faults = dict(apps.faults)
    return walls[0], walls[1], bool(np.array_equal(maps[0], maps[1])), faults


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=40000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=4)
    args = parser.parse_args()
    rates: dict[float, list[float]] = {0.0: [], 120.0: []}
    for _ in range(args.repeats):
        for retry_s in rates:
            rates[retry_s].append(anyio.run(scheduler_rate, args.mutants, retry_s))
    plain, wrapped = (statistics.median(rates[r]) for r in (0.0, 120.0))
    print(f"scheduler, no retry wrapper: {plain:9.0f} mutants/CPU s (median of {args.repeats})")
    print(f"scheduler, retry wrapper:    {wrapped:9.0f} mutants/CPU s ({wrapped / plain - 1:+.1%})")
    clean, faulty, equal, faults = anyio.run(ride_through, args.iters)
    print(f"explanation over HTTP, clean:  {clean:6.2f} s")
    print(f"explanation over HTTP, faulty: {faulty:6.2f} s, faults {faults}, same map: {equal}")


if __name__ == "__main__":
    main()
