"""Evaluation throughput through a real Triton: rex-stream ÷ raw tritonclient (issue 11).

Starts a real Triton server (PyTriton, from REX_STREAM_TRITON_PYTHON) on 127.0.0.1 serving
the bundled EfficientNet-Lite0 (``--model demo``) or the tiny 3×32×32 classifier (``--model
tiny``, a stress test of client overhead), then, in the same run:

- raw: ``--concurrency`` tasks looping a hand-written ``tritonclient.grpc.aio`` ``infer`` on a
  fixed batch of ``--batch`` rows (``bench_triton.raw_rate``), before, between and after;
- rex-stream: ``evaluate`` of ``--photos`` photos (crops of the bundled ladybird photo, as JPEG
  files in a directory) × one map each × 4 metrics {pixel-flipping, faithfulness-correlation,
  IROF, selectivity} through the Triton backend, with the same batch and calls in flight.

The photos are evaluated in ``--rounds`` groups with a raw measurement around each, so a
change of load hits both sides alike; prints mutants/s (rows the backend scored ÷ wall time)
of both, each round's ratio to the raw rate around it, and their median.

    REX_STREAM_TRITON_PYTHON=/work/main/.venv-triton/bin/python \\
        python bench/bench_eval_triton.py [--model demo] [--photos 100] [--batch 16] \\
        [--concurrency 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import anyio
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_triton import make_model, raw_rate  # noqa: E402

from rex_stream import evaluate_sync  # noqa: E402
from rex_stream.cli.demo import demo_config  # noqa: E402
from rex_stream.config import ExplainConfig, SchedulerConfig  # noqa: E402
from rex_stream.engine.backend import BackendSettings  # noqa: E402
from tests.plugins.triton_fixtures import DEMO_IMAGE  # noqa: E402
from tests.servers.triton_server import running_triton  # noqa: E402


def metrics_for(side: int) -> str:
    """The four metrics, sized to the model's input (about 300 rows per photo)."""
    step = side * side // 32
    patch = side // 8
    return (
        f"pixel-flipping:features_in_step={step},faithfulness-correlation:subset_size={step // 7},"
        f"irof,selectivity:patch_size={patch}"
    )


def write_photos(folder: Path, count: int, side: int) -> tuple[Path, Path]:
    """``count`` seeded crops of the bundled photo (JPEG) and a Gaussian map for each."""
    photos, maps = folder / "photos", folder / "maps"
    photos.mkdir()
    maps.mkdir()
    rng = np.random.default_rng(0)
    with Image.open(DEMO_IMAGE) as opened:
        image = opened.convert("RGB")
    width, height = image.size
    yy, xx = np.mgrid[:side, :side]
    for number in range(count):
        size = int(rng.integers(min(width, height) // 2, min(width, height) + 1))
        left = int(rng.integers(0, width - size + 1))
        top = int(rng.integers(0, height - size + 1))
        crop = image.crop((left, top, left + size, top + size))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        stem = f"photo{number:03d}"
        crop.save(photos / f"{stem}.jpg", quality=90)
        cy, cx = rng.uniform(side * 0.3, side * 0.7, size=2)
        sigma = side * rng.uniform(0.1, 0.25)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)).astype(np.float32)
        np.save(maps / f"{stem}.npy", blob)
    return photos, maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "demo"], default="demo")
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--raw-seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=5, help="photo groups, raw runs between")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_path, shape = make_model(args.model, folder)
        photos, maps = write_photos(folder, args.photos, shape[-1])
        metrics = metrics_for(shape[-1])
        base = demo_config() if args.model == "demo" else ExplainConfig()
        scheduler = SchedulerConfig(
            max_batch=args.batch, max_inflight=args.concurrency, adaptive_inflight=False
        )
        config = replace(base, scheduler=scheduler)
        token = "bench-token"
        with running_triton(
            model_path, max_batch_size=args.batch, model_name="bench", access_token=token
        ) as server:
            os.environ["REX_STREAM_BENCH_TOKEN"] = token
            settings = BackendSettings(
                timeout_s=120,
                max_inflight=args.concurrency,
                options={"token_env": "REX_STREAM_BENCH_TOKEN", "auth": "triton"},
            )
            batch = np.random.default_rng(0).random((args.batch, *shape), dtype=np.float32)
            raw_args = argparse.Namespace(concurrency=args.concurrency, seconds=args.raw_seconds)
            url = server.grpc_url

            def raw() -> float:
                return anyio.run(raw_rate, "grpc", url, "bench", batch, raw_args)[0]

            files = sorted(photos.iterdir())
            groups = [files[r :: args.rounds] for r in range(args.rounds)]
            raws, rounds = [raw()], []
            for group in groups:
                load_before = os.getloadavg()[0]
                started = time.perf_counter()
                result = evaluate_sync(
                    group,
                    f"triton://{url}/bench",
                    {"blob": maps},
                    metrics,
                    config=config,
                    backend_settings=settings,
                    seed=0,
                )
                wall_s = time.perf_counter() - started
                raws.append(raw())
                rounds.append((result, wall_s, load_before, os.getloadavg()[0]))
    print(
        f"model={args.model} input={shape} photos={args.photos} in {args.rounds} rounds "
        f"batch={args.batch} concurrency={args.concurrency} metrics={metrics}"
    )
    ratios = []
    for number, (result, wall_s, load_before, load_after) in enumerate(rounds):
        ours = result.queries / wall_s
        reference = (raws[number] + raws[number + 1]) / 2
        ratios.append(ours / reference)
        print(
            f"round {number + 1}: rex-stream {result.queries} rows in {result.calls} calls "
            f"(mean batch {result.mean_batch:.1f}), {wall_s:.1f} s → {ours:.1f}/s; raw "
            f"{raws[number]:.1f} / {raws[number + 1]:.1f}/s around it → ratio "
            f"{ratios[-1]:.3f}; load {load_before:.1f} → {load_after:.1f}"
        )
    rows = sum(r[0].queries for r in rounds)
    wall = sum(r[1] for r in rounds)
    print(
        f"all rounds: {rows} rows in {wall:.1f} s = {rows / wall:.1f}/s; raw mean "
        f"{statistics.mean(raws):.1f}/s → {rows / wall / statistics.mean(raws):.3f}"
    )
    print(
        f"**rex-stream ÷ raw, median of rounds = {statistics.median(ratios):.3f}** (target ≥ 0.9)"
    )


if __name__ == "__main__":
    main()
