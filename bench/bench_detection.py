"""Detection targets on planted detectors (issue 22): does the explanation land on the object,
is the object alone still detected, and do several targets share batches behind a server.

Run: ``.venv/bin/python bench/bench_detection.py [--iters 20]``. Prints ratios only:

1. for every layout, a photo with 5 planted objects, ``--all-detections``: the share of each
   explanation inside its target box (target >= 0.9) and whether the object alone (its box
   shown, everything else masked) is still that detection;
2. the same detector behind 20 ms per call (an async ``python:`` function that sleeps, then
   runs the ONNX model; ``--sync``: a plain function in worker threads): 5 targets at once
   against 1, wall-time ratio (target <= 2), the median of ``--repeat`` runs each, with the
   most calls the detector had at once.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.latency_backend import onnx_session
from rex_stream.adapters.onnx import OnnxBackend
from rex_stream.adapters.python import PythonBackend
from rex_stream.config import ExplainConfig
from rex_stream.detection import DetectionBackend, DetectionRule, layout_named
from rex_stream.engine.backend import BackendSettings
from rex_stream.runs.detect import DetectionResult, DetectionSettings, explain_detections
from tests.detection.planted import LAYOUT_NAMES, planted_photo, save_detector

FIVE = [(1, 1, 0), (1, 5, 1), (4, 3, 2), (6, 1, 1), (6, 6, 0)]


def explain(
    photo: Path, backend: object, layout: str, config: ExplainConfig, **kw
) -> DetectionResult:  # type: ignore[no-untyped-def]
    async def main() -> DetectionResult:
        return await explain_detections(
            str(photo), backend, config, DetectionSettings(layout, **kw)
        )  # type: ignore[arg-type]

    return anyio.run(main)


def alone_is_detected(result: DetectionResult, model: Path, layout: str) -> list[bool]:
    """Each target's box alone (everything else masked to 0), through the same model and
    layout: is it still that detection (class, score and IoU as a passing mutant)?"""
    detector = DetectionBackend(OnnxBackend(model, BackendSettings()), layout_named(layout))
    verdicts = []
    for explained in result.explained:
        x0, y0, x1, y1 = (int(v) for v in explained.detection.box)
        tensor = explained.explanation.subject.tensor
        alone = np.zeros((1, *tensor.shape), np.float32)
        alone[0, :, y0:y1, x0:x1] = tensor[:, y0:y1, x0:x1]
        answer = anyio.run(detector.infer, alone)
        target = explained.detection
        rule = DetectionRule(target_box=target.box, target_class=target.label)
        verdicts.append(bool(rule.passing(answer)[0]))
    return verdicts


def latency_detector(
    model: Path, latency_s: float, max_batch: int, seen: dict[str, int], sync: bool = False
) -> PythonBackend:
    """The end-to-end detector behind ``latency_s`` per call (calls overlap, compute does not);
    ``seen["peak"]``: the most calls it had at once. ``sync``: a plain function, run in worker
    threads behind the backend's own gate (which follows the scheduler's in-flight window)."""
    session = onnx_session(str(model), threads=1)
    compute = anyio.CapacityLimiter(1)
    seen.update(now=0, peak=0)
    lock = threading.Lock()

    def detect_sync(batch: np.ndarray) -> dict[str, np.ndarray]:
        with lock:
            seen["now"] += 1
            seen["peak"] = max(seen["peak"], seen["now"])
        try:
            time.sleep(latency_s)
            with compute_lock:
                (rows,) = session.run(None, {"images": batch})
        finally:
            with lock:
                seen["now"] -= 1
        return {"output0": rows}

    compute_lock = threading.Lock()
    if sync:
        return PythonBackend(detect_sync, (3, 64, 64), max_batch=max_batch, max_inflight=8)

    async def detect(batch: np.ndarray) -> dict[str, np.ndarray]:
        seen["now"] += 1
        seen["peak"] = max(seen["peak"], seen["now"])
        try:
            await anyio.sleep(latency_s)
            (rows,) = await anyio.to_thread.run_sync(
                lambda: session.run(None, {"images": batch}), limiter=compute
            )
        finally:
            seen["now"] -= 1
        return {"output0": rows}

    return PythonBackend(detect, (3, 64, 64), max_batch=max_batch, max_inflight=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--max-batch", type=int, default=32, help="largest batch per call")
    parser.add_argument("--skip-layouts", action="store_true", help="only the latency part")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median wall)")
    parser.add_argument(
        "--sync", action="store_true", help="the detector as a plain (threaded) function"
    )
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-detection-"))
    config = ExplainConfig().with_overrides(iters=args.iters, seed=11, min_box_size=2)
    photo = planted_photo(folder / "five.png", FIVE, scale=(3, 2))
    print("| layout | targets | inside box (min / mean) | object alone detected | queries |")
    print("|---|---|---|---|---|")
    for layout in () if args.skip_layouts else LAYOUT_NAMES:
        model = save_detector(folder / f"{layout}.onnx", layout)
        result = explain(photo, str(model), layout, config, all_detections=True)
        inside = [e.inside_box or 0.0 for e in result.explained]
        alone = alone_is_detected(result, model, layout)
        queries = sum(e.explanation.stats.queries for e in result.explained)
        print(
            f"| {layout} | {len(inside)} | {min(inside):.3f} / {np.mean(inside):.3f} | "
            f"{sum(alone)}/{len(inside)} | {queries} |"
        )
    end2end = save_detector(folder / "end2end.onnx", "end2end")
    one = planted_photo(folder / "one.png", FIVE[:1], scale=(3, 2))
    latency = args.latency_ms / 1000
    batched = config.with_overrides(max_batch=args.max_batch)
    walls = {}
    for name, source, every in (("1 object", one, False), ("5 objects", photo, True)):
        runs = []
        seen: dict[str, int] = {}
        for _ in range(args.repeat):
            started = time.perf_counter()
            result = explain(
                source,
                latency_detector(end2end, latency, args.max_batch, seen, args.sync),
                "end2end",
                batched,
                all_detections=every,
            )
            runs.append(time.perf_counter() - started)
        walls[name] = float(np.median(runs))
        stats = result.explained[0].explanation.stats
        print(
            f"{name} behind {args.latency_ms:.0f} ms: {len(result.explained)} target(s), "
            f"{walls[name]:.2f} s (median of {', '.join(f'{w:.2f}' for w in runs)}), "
            f"{stats.calls} calls, mean batch {stats.mean_batch:.1f}, "
            f"peak calls in flight {seen['peak']}"
        )
    ratio = walls["5 objects"] / walls["1 object"]
    print(f"wall(5 objects, --all-detections) / wall(1 object): {ratio:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
