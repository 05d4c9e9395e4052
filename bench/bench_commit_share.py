"""How much of a run a kill keeps: the share of iterations committed at 25 / 50 / 75 % of the
wall time, and the throughput (mutants/s), with iterations searched a few at a time (the
default: as many as keep the batches full) against all at once (``max_concurrent_searches``
= the number of iterations, the old behaviour). Both runs must give the same map.

    python bench/bench_commit_share.py [--iters 20] [--repeats 2]

Scenarios, on the bundled photo: the bundled EfficientNet-Lite0 as a local ONNX model
(compute-bound), and the fast ImageNet stand-in (bench/fast_model.py) behind 20 ms of simulated
network latency (latency-bound), with the iterations asked for and four times as many.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from functools import partial
from pathlib import Path

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fast_model import save_fast_model
from latency_backend import latency_onnx_backend

from rex_stream import ExplainConfig, explain
from rex_stream.progress import Progress

PHOTO = "rex_stream/data/ladybird.jpg"
BUNDLED = "rex_stream/data/efficientnet-lite0.onnx"


def _latency(model: str) -> object:
    return latency_onnx_backend(model, 0.020, max_batch=32)


async def one_run(backend: object, config: ExplainConfig) -> tuple[list[float], float, int, object]:
    """Run once; return when each iteration was committed (s), the wall time, the mutants."""
    done_at: list[float] = []

    def progress(event: Progress) -> None:
        while event.phase == "iteration" and len(done_at) < event.iterations_done:
            done_at.append(event.elapsed_s)

    result = await explain(PHOTO, backend, config, on_progress=progress)  # type: ignore[arg-type]
    search_s = max(done_at) if done_at else result.stats.wall_s
    return done_at, search_s, result.stats.queries, result.responsibility


def shares(done_at: list[float], wall_s: float, iters: int) -> list[float]:
    """Share of iterations committed at 25, 50 and 75 % of the search's wall time."""
    return [sum(t <= f * wall_s for t in done_at) / iters for f in (0.25, 0.5, 0.75)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the stand-in model's baseline warning, every run
    model = str(save_fast_model(Path(tempfile.mkdtemp()) / "fast.onnx"))
    imagenet = dict(means=(0.485, 0.456, 0.406), stds=(0.229, 0.224, 0.225))
    scenarios = {
        f"lite0 local x{args.iters}": (BUNDLED, args.iters, imagenet),
        f"20ms fast x{args.iters}": (model, args.iters, {}),
        f"20ms fast x{4 * args.iters}": (model, 4 * args.iters, {}),
    }
    print(f"{'scenario':18} {'searches':>12} {'@25%':>6} {'@50%':>6} {'@75%':>6} {'mut/s':>8}")
    for name, (path, iters, extra) in scenarios.items():
        base = dict(iters=iters, seed=3, min_box_size=8, extract=False, **extra)
        make = (lambda p=path: p) if path == BUNDLED else partial(_latency, path)
        rates: dict[str, float] = {}
        maps: dict[str, np.ndarray] = {}
        for label, limit in (("all at once", iters), ("windowed", None)):
            best_rate, best_shares = 0.0, [0.0, 0.0, 0.0]
            for _ in range(args.repeats):
                config = ExplainConfig().with_overrides(max_concurrent_searches=limit, **base)
                done_at, wall_s, queries, responsibility = anyio.run(
                    partial(one_run, make(), config)
                )
                rate = queries / wall_s
                if rate > best_rate:
                    best_rate, best_shares = rate, shares(done_at, wall_s, iters)
                maps[label] = responsibility  # type: ignore[assignment]
            rates[label] = best_rate
            cells = " ".join(f"{s:6.0%}" for s in best_shares)
            print(f"{name:18} {label:>12} {cells} {best_rate:8.0f}", flush=True)
        same = np.array_equal(maps["all at once"], maps["windowed"])
        ratio = rates["windowed"] / rates["all at once"]
        print(f"{name:18} throughput windowed / all at once = {ratio:.2f}; same map: {same}")


if __name__ == "__main__":
    main()
