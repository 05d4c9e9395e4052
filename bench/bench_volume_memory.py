"""Peak RSS of explaining a large float32 volume (issue 5): 512³ by default.

    python bench/bench_volume_memory.py [--size 512] [--iters 4] [--tree-depth 6] [--inflight 1]

The model is a cheap Python callable (mean intensity of a fixed cube → two logits), so the
numbers measure rex-stream itself: the subject tensor, the scheduler's batch buffers, the
responsibility map and the extraction. Prints peak RSS next to the reference the issue
sets: one dense float32 map per class × iterations.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
from rex_stream.adapters.python import PythonBackend

from rex_stream import explain_sync


def rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--tree-depth", type=int, default=6)
    parser.add_argument("--inflight", type=int, default=1)
    args = parser.parse_args()
    n = args.size
    start_rss = rss_mib()
    volume = np.zeros((n, n, n), np.float32)
    cube = tuple(slice(n // 3, n // 3 + max(2, n // 16)) for _ in range(3))
    volume[cube] = 1.0

    def model(batch: np.ndarray) -> np.ndarray:
        """Class 1 when the cube is bright (a planted blob), else class 0."""
        level = batch[(slice(None), *cube)].mean(axis=(1, 2, 3))
        return np.stack([np.full_like(level, 0.5), level], axis=1)

    backend = PythonBackend(model, (n, n, n), name="cube", max_inflight=args.inflight)
    began = time.perf_counter()
    explanation = explain_sync(
        volume,
        backend,
        mode="voxel",
        seed=0,
        iters=args.iters,
        tree_depth=args.tree_depth,
        max_inflight=args.inflight,
    )
    wall_s = time.perf_counter() - began
    peak = rss_mib()
    volume_mib = volume.nbytes / 2**20
    classes = 2
    reference = classes * args.iters * volume_mib
    mask = explanation.mask
    inside = bool(mask is not None and mask[cube].mean() > 0.5)
    result = {
        "size": n,
        "iters": args.iters,
        "tree_depth": args.tree_depth,
        "max_inflight": args.inflight,
        "queries": explanation.stats.queries,
        "mean_batch": explanation.stats.mean_batch,
        "wall_s": round(wall_s, 1),
        "volume_mib": round(volume_mib),
        "start_rss_mib": round(start_rss),
        "peak_rss_mib": round(peak),
        "dense_maps_reference_mib": round(reference),
        "peak_over_reference": round(peak / reference, 3),
        "explanation_area": None if mask is None else float(mask.mean()),
        "explanation_covers_cube": inside,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
