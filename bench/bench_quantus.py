"""rex-stream evaluate against Quantus 0.6.0: same model, photo, map and metrics; equal numbers
(``--quantus-compatible``) and wall time, behind a simulated 20 ms per call and locally.

    python bench/bench_quantus.py [--latency-ms 20] [--quantus-python .venv-quantus/bin/python]

Quantus runs in its own venv (``tests/evaluation/quantus_reference.py``: onnxruntime inside a
``torch.nn.Module`` that sleeps the latency before every call); rex-stream scores through
``bench/latency_backend.py`` (the same sleep per call, calls overlapping as over a network).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from latency_backend import latency_onnx_backend, onnx_session  # noqa: E402

from rex_stream import evaluate_sync  # noqa: E402
from rex_stream.cli.demo import demo_config  # noqa: E402
from rex_stream.config import ExplainConfig  # noqa: E402
from rex_stream.engine.backend import ModelInfo  # noqa: E402
from rex_stream.modes import load_subject  # noqa: E402

MODEL = ROOT / "rex_stream" / "data" / "efficientnet-lite0.onnx"
PHOTO = ROOT / "rex_stream" / "data" / "ladybird.jpg"
METRICS = {
    "pixel-flipping:features_in_step=224": ("PixelFlipping", {"features_in_step": 224}, True),
    "faithfulness-correlation": ("FaithfulnessCorrelation", {}, False),
    "irof": ("IROF", {}, True),
    "selectivity": ("Selectivity", {}, True),
}


def gaussian_map(size: int = 224, sigma: float = 40.0) -> np.ndarray:
    """The reference map: a centred Gaussian."""
    yy, xx = np.mgrid[:size, :size]
    centre = (size - 1) / 2
    return np.exp(-((yy - centre) ** 2 + (xx - centre) ** 2) / (2 * sigma**2)).astype(np.float32)


def run_quantus(
    python: str,
    x: np.ndarray,
    a: np.ndarray,
    target: object,
    delay_s: float = 0.0,
    metrics: dict | None = None,
    mask: np.ndarray | None = None,
) -> dict:
    """Quantus' scores and wall time per metric, in its own venv (``metrics``: this bench's
    by default; ``mask``: none by default)."""
    with tempfile.TemporaryDirectory() as folder:
        case, spec = Path(folder) / "case.npz", Path(folder) / "metrics.json"
        s = np.zeros_like(a, dtype=bool) if mask is None else mask
        np.savez(case, x=x, a=a, s=s, y=target, seed=0)
        spec.write_text(json.dumps(METRICS if metrics is None else metrics))
        script = ROOT / "tests" / "evaluation" / "quantus_reference.py"
        done = subprocess.run(
            [python, str(script), str(MODEL), str(case), str(spec), str(delay_s)],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    return json.loads(done.stdout)


def run_ours(
    tensor: np.ndarray, a: np.ndarray, latency_s: float, max_batch: int | None = None
) -> tuple[object, float]:
    """rex-stream's evaluation and its wall time."""
    backend = latency_onnx_backend(str(MODEL), latency_s) if latency_s else str(MODEL)
    config = ExplainConfig()
    if max_batch:
        config = replace(config, scheduler=replace(config.scheduler, max_batch=max_batch))
    started = time.perf_counter()
    result = evaluate_sync(
        tensor,
        backend,
        {"gauss": a},
        ",".join(METRICS),
        seed=0,
        quantus_compatible=True,
        config=config,
    )
    return result, time.perf_counter() - started


def load() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument(
        "--quantus-python",
        default=os.environ.get("REX_STREAM_QUANTUS_PYTHON", str(ROOT / ".venv-quantus/bin/python")),
    )
    parser.add_argument("--skip-local", action="store_true", help="only the latency run")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each pair, interleaved")
    parser.add_argument("--max-batch", type=int, help="rex-stream's batch (default: the backend's)")
    args = parser.parse_args()
    info = ModelInfo("efficientnet-lite0", "input", (3, 224, 224))
    tensor = load_subject(PHOTO, info, demo_config()).tensor
    a = gaussian_map()
    session = onnx_session(str(MODEL))
    target = int(np.argmax(session.run(None, {session.get_inputs()[0].name: tensor[None]})[0][0]))
    latencies = [args.latency_ms / 1000.0] + ([] if args.skip_local else [0.0])
    summary = []
    for repeat in range(args.repeats):
        for latency_s in latencies:
            # alternate which tool goes first, so a change of load hits both alike
            first_ours = repeat % 2 == 0
            load_start = load()
            if first_ours:
                ours, ours_s = run_ours(tensor, a, latency_s, args.max_batch)
            theirs = run_quantus(args.quantus_python, tensor, a, target, latency_s)
            if not first_ours:
                ours, ours_s = run_ours(tensor, a, latency_s, args.max_batch)
            load_end = load()
            quantus_s = sum(entry["wall_s"] for entry in theirs.values())
            calls = sum(entry["calls"] for entry in theirs.values())
            print(f"\n## latency {latency_s * 1000:g} ms per call (run {repeat + 1})")
            print("| metric | Quantus 0.6.0 | rex-stream | relative difference |")
            print("|---|---|---|---|")
            results = ours.inputs[0].results["gauss"]  # type: ignore[attr-defined]
            for label, entry in theirs.items():
                mine = results[label].score
                diff = abs(mine - entry["score"]) / max(1e-12, abs(entry["score"]))
                print(f"| {label} | {entry['score']:.6g} | {mine:.6g} | {diff:.1e} |")
            line = (
                f"| {latency_s * 1000:g} ms | {load_start:.1f} → {load_end:.1f} | {calls}, "
                f"{quantus_s:.1f} s | {ours.queries}, {ours.calls} "  # type: ignore[attr-defined]
                f"({ours.mean_batch:.1f}), {ours_s:.1f} s | "  # type: ignore[attr-defined]
                f"**{quantus_s / ours_s:.1f}×** |"
            )
            print(line)
            summary.append(line)
    print(
        "\n| latency | load | Quantus: calls, wall | rex-stream: rows, calls (mean batch), wall "
        "| ratio |"
    )
    print("|---|---|---|---|---|")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
