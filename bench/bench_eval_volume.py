"""Peak RSS of evaluating a map of a large float32 volume with pixel-flipping-style metrics
(issue 11): 512³ by default, within 2 GiB.

    python bench/bench_eval_volume.py [--size 512] [--steps 16] [--patches 4]

The volume and its map are ``.npy`` files written slab by slab (the volume is read memory-
mapped by voxel mode, as the CLI reads it). The model is a cheap Python callable: class 1's
logit is the mean of a planted cube. The metrics are pixel-flipping and faithfulness-estimate
(``--steps`` groups of ranked voxels), selectivity and region-perturbation (``--patches``³
patches). The evaluation runs in a child process, which reports its own peak RSS
(``getrusage``); the parent only writes the files.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_inputs(folder: Path, n: int) -> tuple[Path, Path]:
    """The volume (a bright cube on noise) and a map (a Gaussian blob on the cube), slab by
    slab, so the parent never holds either."""
    volume_path, map_path = folder / "volume.npy", folder / "map.npy"
    volume = np.lib.format.open_memmap(volume_path, "w+", np.float32, (n, n, n))
    attribution = np.lib.format.open_memmap(map_path, "w+", np.float32, (n, n, n))
    rng = np.random.default_rng(0)
    low, high = n // 3, n // 3 + max(2, n // 16)
    centre, sigma = (low + high) / 2, n / 8
    yy, xx = np.mgrid[:n, :n]
    plane = ((yy - centre) ** 2 + (xx - centre) ** 2).astype(np.float32)
    for z in range(n):
        volume[z] = rng.random((n, n), dtype=np.float32) * 0.2
        if low <= z < high:
            volume[z, low:high, low:high] = 1.0
        attribution[z] = np.exp(-(plane + (z - centre) ** 2) / (2 * sigma**2))
    volume.flush()
    attribution.flush()
    del volume, attribution
    return volume_path, map_path


def child(args: argparse.Namespace) -> None:
    """Evaluate and print a JSON line with the peak RSS."""
    from rex_stream import evaluate_sync
    from rex_stream.adapters.python import PythonBackend

    n = args.size
    low, high = n // 3, n // 3 + max(2, n // 16)
    cube = (slice(None), *(slice(low, high),) * 3)

    def model(batch: np.ndarray) -> np.ndarray:
        level = batch[cube].mean(axis=(1, 2, 3), dtype=np.float64)
        return np.stack([np.full_like(level, 0.5), level], axis=1)

    backend = PythonBackend(model, (n, n, n), name="cube", max_inflight=1)
    features = n**3
    step = -(-features // args.steps)
    patch = -(-n // args.patches)
    metrics = (
        f"pixel-flipping:features_in_step={step},faithfulness-estimate:features_in_step={step},"
        f"selectivity:patch_size={patch},"
        f"region-perturbation:patch_size={patch}:regions_evaluation={args.patches**3 // 4}"
    )
    began = time.perf_counter()
    result = evaluate_sync(args.volume, backend, {"blob": args.map}, metrics, seed=0)
    wall_s = time.perf_counter() - began
    scores = result.inputs[0].results["blob"]
    print(
        json.dumps(
            {
                "size": n,
                "metrics": metrics,
                "scores": {label: r.score for label, r in scores.items()},
                "queries": result.queries,
                "calls": result.calls,
                "wall_s": round(wall_s, 1),
                "volume_mib": round(features * 4 / 2**20),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--patches", type=int, default=4)
    parser.add_argument("--volume", help=argparse.SUPPRESS)
    parser.add_argument("--map", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.volume:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="eval-volume") as folder:
        volume, attribution = write_inputs(Path(folder), args.size)
        command = [sys.executable, __file__, "--size", str(args.size), "--steps", str(args.steps)]
        command += [
            "--patches",
            str(args.patches),
            "--volume",
            str(volume),
            "--map",
            str(attribution),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=2))
    print(
        f"peak RSS {report['peak_rss_mib']} MiB (target ≤ 2048 MiB) for a "
        f"{report['size']}³ float32 volume ({report['volume_mib']} MiB)"
    )


if __name__ == "__main__":
    main()
