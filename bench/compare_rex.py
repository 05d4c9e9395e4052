"""rex-stream against ReX (``rex-xai`` 0.4.1) on the same ONNX model, photos, seed and iterations.

For each photo:

1. ReX runs in its own virtual environment (``bench/rex_runner.py`` as a subprocess):
   its map, its wall time (responsibility + global extraction, no analysis) and its model
   queries and calls;
2. rex-stream runs on the same photo through its ONNX adapter (warmed up first): map, wall time
   (target prediction + search + extraction), queries and calls;
3. both maps are scored by the SAME evaluator, rex-stream's insertion/deletion curves through
   the local model with the same baseline (mask value 0 in normalised space);
4. the wall-time ratio ReX / rex-stream on the local CPU model;
5. behind a 20 ms-per-call server: ReX is either actually run with a prediction function that
   sleeps 20 ms per call (``--rex-latency run``, the default) or estimated as local wall time +
   20 ms × calls (always printed too); rex-stream runs through a :class:`PythonBackend` whose
   async function sleeps 20 ms and then runs the ONNX session in a worker thread, with
   ``--latency-inflight`` calls in flight.

Run with rex-stream's interpreter: ``/work/venv/bin/python bench/compare_rex.py --images dog``.
Timings on a shared CPU are noisy; ratios are what matter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency_backend import latency_onnx_backend

from rex_stream import BackendSettings, ExplainConfig, explain, open_backend
from rex_stream.causal.insertion_deletion import Curves, insertion_deletion
from rex_stream.config import EvaluationConfig, SchedulerConfig
from rex_stream.engine.backend import Backend
from rex_stream.engine.scheduler import Scheduler
from rex_stream.result import Explanation

HERE = Path(__file__).resolve().parent
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEFAULT_MODEL = DATA / "models" / "efficientnet-lite0.onnx"
DEFAULT_IMAGES = ("dog", "ladybird", "peacock", "starfish", "tennis")
MEANS = (0.485, 0.456, 0.406)
STDS = (0.229, 0.224, 0.225)


@dataclass
class Row:
    """One photo's results, ReX beside rex-stream."""

    image: str
    rex: dict[str, Any]
    stream: dict[str, Any]
    rex_curves: Curves
    stream_curves: Curves
    map_correlation: float
    rex_latency_wall: float | None = None
    stream_latency_wall: float | None = None
    stream_latency_calls: int | None = None

    @property
    def rex_latency_estimate(self) -> float:
        """ReX's local wall time plus the latency of each of its calls."""
        return float(self.rex["wall_s"] + self.rex["latency_s"] * self.rex["calls"])


def run_rex(
    options: argparse.Namespace, image: Path, out: Path, latency_ms: float = 0.0
) -> dict[str, Any]:
    """Run ``rex_runner.py`` in ReX's venv; return its JSON record with the map loaded."""
    tag = f"{image.stem}_rex_{latency_ms:g}ms"
    out_map, out_json = out / f"{tag}.npy", out / f"{tag}.json"
    command = [
        options.rex_python,
        str(HERE / "rex_runner.py"),
        str(image),
        "--model",
        str(options.model),
        "--config",
        str(options.rex_config),
        "--iters",
        str(options.iters),
        "--seed",
        str(options.seed),
        "--batch-size",
        str(options.rex_batch_size),
        "--latency-ms",
        str(latency_ms),
        "--out-map",
        str(out_map),
        "--out-json",
        str(out_json),
    ]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ReX failed on {image.name}:\n{done.stderr[-3000:]}")
    record = json.loads(out_json.read_text())
    record["map"] = np.load(out_map)
    record["latency_s"] = options.latency_ms / 1000.0
    return record


def stream_config(options: argparse.Namespace, max_inflight: int) -> ExplainConfig:
    """rex-stream's configuration: ReX's defaults, the same seed/iters/normalisation."""
    return ExplainConfig().with_overrides(
        iters=options.iters,
        seed=options.seed,
        means=MEANS,
        stds=STDS,
        max_batch=options.max_batch,
        max_inflight=max_inflight,
        analyse=False,
    )


async def warm_up(backend: Backend, batch: int) -> None:
    """One throwaway call, so session start-up costs are not timed (ReX's are not either)."""
    await backend.infer(np.zeros((batch, *backend.info.input_shape), backend.info.dtype))


async def run_stream(
    options: argparse.Namespace, image: Path, backend: Backend, max_inflight: int
) -> Explanation:
    """Explain ``image`` with rex-stream through ``backend``."""
    await warm_up(backend, options.max_batch)
    return await explain(image, backend, stream_config(options, max_inflight))


async def evaluate(
    backend: Backend, explanation: Explanation, responsibility: np.ndarray, step: int
) -> Curves:
    """rex-stream's insertion/deletion curves for ``responsibility`` on the explained input."""
    async with Scheduler(backend, SchedulerConfig(max_batch=16)) as scheduler:
        return await insertion_deletion(
            explanation.subject,
            responsibility,
            explanation.target,
            scheduler,
            EvaluationConfig(analyse=True, insertion_step=step),
            explanation.config.scoring,
        )


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two maps (ties ranked by order, which is fine for a summary)."""
    ra = np.argsort(np.argsort(a.ravel(), kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b.ravel(), kind="stable"), kind="stable").astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


async def compare_one(options: argparse.Namespace, name: str, out: Path) -> Row:
    """Everything for one photo."""
    image = DATA / "images" / f"{name}.jpg"
    print(f"[{name}] ReX (local) ...", flush=True)
    rex = await anyio.to_thread.run_sync(run_rex, options, image, out)
    print(f"[{name}] rex-stream (local) ...", flush=True)
    local = await open_backend(str(options.model), BackendSettings(max_inflight=2))
    try:
        stream = await run_stream(options, image, local, max_inflight=2)
        if stream.target.classification != rex["target"]:
            print(
                f"  WARNING: targets differ: ReX {rex['target']}, rex-stream "
                f"{stream.target.classification}"
            )
        np.save(out / f"{name}_stream.npy", stream.responsibility)
        print(f"[{name}] evaluating both maps ...", flush=True)
        rex_curves = await evaluate(local, stream, rex["map"], options.insertion_step)
        stream_curves = await evaluate(local, stream, stream.responsibility, options.insertion_step)
    finally:
        await local.aclose()
    row = Row(
        image=name,
        rex=rex,
        stream={
            "wall_s": stream.stats.wall_s,
            "queries": stream.stats.queries,
            "calls": stream.stats.calls,
            "search_queries": stream.stats.passing + stream.stats.failing,
            "extraction_queries": stream.sufficiency.queries if stream.sufficiency else 0,
            "area": stream.sufficiency.area if stream.sufficiency else None,
            "target": stream.target.classification,
            "target_confidence": stream.target.confidence,
            "max_depth": stream.stats.max_depth,
        },
        rex_curves=rex_curves,
        stream_curves=stream_curves,
        map_correlation=rank_correlation(rex["map"], stream.responsibility),
    )
    if options.latency_ms > 0:
        latency_s = options.latency_ms / 1000.0
        if options.rex_latency == "run":
            print(f"[{name}] ReX behind {options.latency_ms:g} ms ...", flush=True)
            slow = await anyio.to_thread.run_sync(run_rex, options, image, out, options.latency_ms)
            row.rex_latency_wall = float(slow["wall_s"])
        print(f"[{name}] rex-stream behind {options.latency_ms:g} ms ...", flush=True)
        remote = latency_onnx_backend(
            str(options.model),
            latency_s,
            max_batch=options.max_batch,
            max_inflight=options.latency_inflight,
        )
        slow_stream = await run_stream(options, image, remote, options.latency_inflight)
        row.stream_latency_wall = slow_stream.stats.wall_s
        row.stream_latency_calls = slow_stream.stats.calls
    return row


def print_table(rows: list[Row], options: argparse.Namespace) -> dict[str, Any]:
    """Print the side-by-side table and the ratios; return them for the JSON summary."""
    print()
    print(
        f"ReX 0.4.1 (batch_size {options.rex_batch_size}) vs rex-stream "
        f"(max_batch {options.max_batch}); iters {options.iters}, seed {options.seed}; "
        f"AUCs from rex-stream's evaluator (step {options.insertion_step}, normalised)"
    )
    head = (
        f"{'image':<9} {'ins ReX':>7} {'ins rs':>7} {'del ReX':>7} {'del rs':>7} "
        f"{'area ReX':>8} {'area rs':>7} {'rho':>5} "
        f"{'q ReX':>6} {'q rs':>6} {'calls ReX':>9} {'calls rs':>8} "
        f"{'t ReX':>6} {'t rs':>6} {'ratio':>6}"
    )
    print(head)
    print("-" * len(head))
    summary: dict[str, Any] = {"rows": []}
    for r in rows:
        ratio = r.rex["wall_s"] / r.stream["wall_s"]
        area_rex = r.rex.get("sufficiency_area")
        area_rs = r.stream["area"]
        print(
            f"{r.image:<9} {r.rex_curves.insertion_auc:7.3f} {r.stream_curves.insertion_auc:7.3f} "
            f"{r.rex_curves.deletion_auc:7.3f} {r.stream_curves.deletion_auc:7.3f} "
            f"{(area_rex or float('nan')):8.4f} {(area_rs or float('nan')):7.4f} "
            f"{r.map_correlation:5.2f} "
            f"{r.rex['queries']:6d} {r.stream['queries']:6d} "
            f"{r.rex['calls']:9d} {r.stream['calls']:8d} "
            f"{r.rex['wall_s']:6.1f} {r.stream['wall_s']:6.1f} {ratio:6.2f}"
        )
        summary["rows"].append(
            {
                "image": r.image,
                "insertion_auc": {
                    "rex": r.rex_curves.insertion_auc,
                    "stream": r.stream_curves.insertion_auc,
                },
                "deletion_auc": {
                    "rex": r.rex_curves.deletion_auc,
                    "stream": r.stream_curves.deletion_auc,
                },
                "area": {"rex": area_rex, "stream": area_rs},
                "map_rank_correlation": r.map_correlation,
                "rex": {k: v for k, v in r.rex.items() if k != "map"},
                "stream": r.stream,
                "local_ratio": ratio,
                "rex_latency_wall": r.rex_latency_wall,
                "rex_latency_estimate": r.rex_latency_estimate,
                "stream_latency_wall": r.stream_latency_wall,
                "stream_latency_calls": r.stream_latency_calls,
            }
        )
    rex_total = sum(r.rex["wall_s"] for r in rows)
    stream_total = sum(r.stream["wall_s"] for r in rows)
    print(
        f"\nlocal CPU model: ReX {rex_total:.1f} s, rex-stream {stream_total:.1f} s, "
        f"ratio ReX/rex-stream = {rex_total / stream_total:.2f}"
    )
    print(
        f"model queries: ReX {sum(r.rex['queries'] for r in rows)} "
        f"(search {sum(r.rex['responsibility_queries'] for r in rows)}), rex-stream "
        f"{sum(r.stream['queries'] for r in rows)} "
        f"(search {sum(r.stream['search_queries'] for r in rows)})"
    )
    summary["local_ratio"] = rex_total / stream_total
    if options.latency_ms > 0 and rows and rows[0].stream_latency_wall is not None:
        stream_slow = sum(r.stream_latency_wall or 0.0 for r in rows)
        estimate = sum(r.rex_latency_estimate for r in rows)
        print(
            f"\nbehind {options.latency_ms:g} ms per call (rex-stream: "
            f"{options.latency_inflight} calls in flight):"
        )
        for r in rows:
            measured = (
                "" if r.rex_latency_wall is None else f"measured {r.rex_latency_wall:.1f} s, "
            )
            print(
                f"  {r.image:<9} ReX {measured}estimate {r.rex_latency_estimate:.1f} s; "
                f"rex-stream {r.stream_latency_wall:.1f} s ({r.stream_latency_calls} calls)"
            )
        line = f"  total: rex-stream {stream_slow:.1f} s; ReX estimate {estimate:.1f} s"
        summary["latency_ratio_estimate"] = estimate / stream_slow
        if all(r.rex_latency_wall is not None for r in rows):
            measured_total = sum(r.rex_latency_wall or 0.0 for r in rows)
            line += f", measured {measured_total:.1f} s"
            summary["latency_ratio_measured"] = measured_total / stream_slow
            line += f"\n  ratio ReX/rex-stream = {measured_total / stream_slow:.2f} (measured)"
        line += f"; {estimate / stream_slow:.2f} (estimate)"
        print(line)
    return summary


async def main_async(options: argparse.Namespace) -> None:
    """Compare every requested photo, then print and save the summary."""
    out = Path(options.out)
    await anyio.Path(out).mkdir(parents=True, exist_ok=True)
    context = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
        },
        "options": {k: str(v) for k, v in vars(options).items()},
    }
    rows: list[Row] = []
    for name in options.images:
        rows.append(await compare_one(options, name, out))
        # print and save after every photo, so a long run that is cut short keeps its results
        summary = {**print_table(rows, options), **context}
        await anyio.Path(out / "summary.json").write_text(
            json.dumps(summary, indent=2, default=float)
        )
    print(f"\nmaps and records in {out}")


def main() -> None:
    """Command line: see ``--help``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", default=list(DEFAULT_IMAGES))
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--rex-python", default="/work/rexvenv/bin/python")
    parser.add_argument(
        "--rex-config", type=Path, default=Path(__file__).with_name("rex-imagenet.toml")
    )
    parser.add_argument(
        "--rex-batch-size", type=int, default=1, help="ReX's batch_size (its default is 1)"
    )
    parser.add_argument("--max-batch", type=int, default=8, help="rex-stream's max_batch")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="0 skips step 5")
    parser.add_argument("--latency-inflight", type=int, default=8)
    parser.add_argument(
        "--rex-latency",
        choices=("run", "estimate"),
        default="run",
        help="actually run ReX behind the latency, or only estimate it",
    )
    parser.add_argument("--insertion-step", type=int, default=100)
    parser.add_argument("--out", default="/tmp/rex_compare")
    anyio.run(main_async, parser.parse_args())


if __name__ == "__main__":
    main()
