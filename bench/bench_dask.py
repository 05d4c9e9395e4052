"""Dask scale-out against one process on the same machine: wall time, overhead, store equality.

    python bench/bench_dask.py [--inputs 200] [--iters 10] [--workers 2] [--threads 2]

A directory of ``--inputs`` small pictures (synthetic 224 × 224, a bright square in a different
place each) is explained through the fast ImageNet-shaped ONNX model of ``bench/fast_model.py``
twice: by one process (``explain_many``, ``workers × threads`` inputs at once, one scheduler)
and by a ``LocalCluster`` of ``--workers`` processes × ``--threads`` (``explain_on_cluster``).
Printed: both wall times and the overhead ratio (the cluster's start is timed apart), the
workers' mean batch, the rerun of the complete store (no model calls), a no-op task's round
trip (median, p95) and the no-op task rate, and whether the two stores are identical (maps,
masks, ledgers, results).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import numpy as np
import zarr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fast_model import save_fast_model  # noqa: E402

from rex_stream import ExplainConfig  # noqa: E402
from rex_stream.distributed import explain_on_cluster  # noqa: E402
from rex_stream.runs.many import explain_many  # noqa: E402

#: Statistics a result determines (the others count time, batching and resumed work).
RESULT_STATS = ("passing", "failing", "max_depth", "avg_box_size", "iterations")


def make_pictures(folder: Path, count: int, size: int = 224) -> list[Path]:
    """``count`` noisy pictures, each with a bright square somewhere else."""
    from PIL import Image

    rng = np.random.default_rng(11)
    paths = []
    for number in range(count):
        pixels = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
        row, col = rng.integers(0, size - 60, 2)
        pixels[row : row + 60, col : col + 60] = rng.integers(150, 255, 3, dtype=np.uint8)
        path = folder / f"p{number:04d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def differences(one: Path, other: Path) -> list[str]:
    """Where two stores differ (maps, masks, ledgers, result attributes); empty if equal."""
    a_root, b_root = zarr.open_group(str(one), mode="r"), zarr.open_group(str(other), mode="r")
    found = []
    keys = sorted(a_root.group_keys())
    if keys != sorted(b_root.group_keys()):
        return ["different groups"]
    for key in keys:
        a, b = a_root[key], b_root[key]
        for name in ("responsibility", "explanation"):
            if not np.array_equal(np.asarray(a[name][:]), np.asarray(b[name][:])):
                found.append(f"{key}/{name}")
        ledgers = sorted(a["ledger"].array_keys())
        if ledgers != sorted(b["ledger"].array_keys()):
            found.append(f"{key}/ledger names")
        elif any(not np.array_equal(a["ledger"][n][:], b["ledger"][n][:]) for n in ledgers):
            found.append(f"{key}/ledger")
        attrs = [dict(a.attrs), dict(b.attrs)]
        for item in attrs:
            item.pop("fingerprint", None)
            item["stats"] = {k: item["stats"][k] for k in RESULT_STATS}
        if attrs[0] != attrs[1]:
            found.append(f"{key}/attributes")
    return found


def noop() -> None:
    """The task whose round trip is Dask's own cost."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=200)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    config = ExplainConfig().with_overrides(iters=args.iters, seed=3)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = str(save_fast_model(folder / "fast.onnx"))
        (folder / "in").mkdir()
        pictures = make_pictures(folder / "in", args.inputs)
        concurrent = args.workers * args.threads

        started = time.perf_counter()
        anyio.run(
            lambda: explain_many(
                pictures,
                model,
                config,
                store=folder / "one.zarr",
                concurrent_inputs=concurrent,
                keep_results=False,
            )
        )
        one_s = time.perf_counter() - started

        started = time.perf_counter()
        cluster = LocalCluster(
            n_workers=args.workers,
            threads_per_worker=args.threads,
            processes=True,
            dashboard_address=":0",
        )
        client = Client(cluster)
        start_s = time.perf_counter() - started
        try:
            report = explain_on_cluster(client, pictures, model, config, store=folder / "dask.zarr")
            rerun = explain_on_cluster(client, pictures, model, config, store=folder / "dask.zarr")
            trips = []
            for _ in range(200):
                began = time.perf_counter()
                client.submit(noop, pure=False).result()
                trips.append(time.perf_counter() - began)
            began = time.perf_counter()
            client.gather(client.map(lambda _: None, range(2000), pure=False))
            rate = 2000 / (time.perf_counter() - began)
        finally:
            client.close()
            cluster.close()
        counters = report.workers.values()
        mutants = sum(c["mutants"] for c in counters)
        calls = sum(c["calls"] for c in counters)
        trips.sort()
        result = {
            "inputs": args.inputs,
            "iters": args.iters,
            "workers": args.workers,
            "threads": args.threads,
            "one_process_s": round(one_s, 2),
            "cluster_s": report.wall_s,
            "overhead": round(report.wall_s / one_s - 1, 3),
            "cluster_start_s": round(start_s, 2),
            "worker_mean_batch": round(mutants / calls, 1) if calls else 0.0,
            "rerun_s": rerun.wall_s,
            "rerun_calls": sum(c["calls"] for c in rerun.workers.values()),
            "rerun_skipped": sum(1 for o in rerun.outcomes if getattr(o, "skipped", False)),
            "noop_round_trip_ms_median": round(1000 * statistics.median(trips), 2),
            "noop_round_trip_ms_p95": round(1000 * trips[int(0.95 * len(trips))], 2),
            "noop_tasks_per_s": round(rate),
            "failures": sum(1 for o in report.outcomes if not hasattr(o, "summary")),
            "store_differences": differences(folder / "one.zarr", folder / "dask.zarr"),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
