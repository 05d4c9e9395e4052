"""Re-explanation metrics: concurrent re-explanations through one scheduler vs one at a time.

    python bench/bench_robustness.py [--latency-ms 20] [--samples 50] [--iters 5]

Max- and avg-sensitivity with rex-stream's ReX search as the explainer, on a small CNN
(3×32×32, tests/onnx_models.py) behind a simulated network (``bench/latency_backend.py``).
"concurrent" is rex-stream's way: every noisy copy is re-explained at once, their searches
share the scheduler's batches. "one at a time" re-explains the copies in sequence (as Quantus
calls ``explain_func`` once per sample), each search still batched within itself. Both give
the same scores (the same seeded copies, the same seeded searches); the ratio is the wall time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from latency_backend import latency_onnx_backend  # noqa: E402

from rex_stream import evaluate_sync  # noqa: E402
from rex_stream.evaluation.metrics import robustness  # noqa: E402
from tests.onnx_models import save_tiny_cnn  # noqa: E402


def run(model: Path, latency_s: float, metrics: str, explainer: str, at_once: int) -> tuple:
    """One evaluation with ``at_once`` re-explanations in flight; (result, wall seconds)."""
    robustness.IN_FLIGHT = at_once
    x = np.random.default_rng(0).normal(0, 1, (3, 32, 32)).astype(np.float32)
    a = np.abs(x).sum(axis=0)
    backend = latency_onnx_backend(str(model), latency_s, max_batch=64, max_inflight=8)
    started = time.perf_counter()
    result = evaluate_sync(x, backend, {"a": a}, metrics, explainer=explainer, seed=0)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    n = args.samples
    metrics = f"max-sensitivity:nr_samples={n},avg-sensitivity:nr_samples={n}"
    explainer = f"rex:iters={args.iters}"
    with tempfile.TemporaryDirectory() as folder:
        model = save_tiny_cnn(Path(folder) / "tiny.onnx")
        rows = []
        for name, at_once in (("concurrent", robustness.IN_FLIGHT), ("one at a time", 1)):
            result, wall_s = run(model, args.latency_ms / 1000, metrics, explainer, at_once)
            rows.append((name, result, wall_s))
    print(f"{n} noisy copies, {explainer}, {args.latency_ms:g} ms per call, tiny CNN 3×32×32\n")
    print(
        "| re-explanations | max-sensitivity | avg-sensitivity | queries | calls | mean batch "
        "| wall s |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, result, wall_s in rows:
        scores = list(result.inputs[0].results["a"].values())
        print(
            f"| {name} | {scores[0].score:.6f} | {scores[1].score:.6f} | {result.queries} "
            f"| {result.calls} | {result.mean_batch:.1f} | {wall_s:.2f} |"
        )
    print(f"\nspeed-up of concurrent re-explanation: {rows[1][2] / rows[0][2]:.1f}×")


if __name__ == "__main__":
    main()
