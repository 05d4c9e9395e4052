"""MPRT and efficient-MPRT on EfficientNet-Lite0 and the ladybird photo: what the weight
metrics cost (variant sessions opened, queries, wall time) with a cheap explainer.

The explainer is occlusion through the given scheduler (each ``--patch`` square set to the
mask value, one row each, plus x): deterministic, and its map depends on the weights.

    python bench/bench_mprt.py [--patch 28] [--metrics mprt,efficient-mprt]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rex_stream import evaluate_sync
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.scheduler import Scheduler
from rex_stream.evaluation.variants.weights import WeightedModel

DATA = Path(__file__).resolve().parents[1] / "rex_stream" / "data"


def occlusion(patch: int):  # type: ignore[no-untyped-def]
    """A re-explainer: f(x)_t − f(x with one patch × patch square at 0)_t, per square."""

    async def explain(
        x: np.ndarray, target: int, scheduler: Scheduler, info: ModelInfo, config: ExplainConfig
    ) -> np.ndarray:
        height, width = x.shape[-2:]
        corners = [(r, c) for r in range(0, height, patch) for c in range(0, width, patch)]

        def hidden(r: int, c: int):  # type: ignore[no-untyped-def]
            def fill(out: np.ndarray) -> None:
                np.copyto(out, x)
                out[..., r : r + patch, c : c + patch] = 0.0

            return fill

        fills = [lambda out: np.copyto(out, x), *(hidden(r, c) for r, c in corners)]
        scores = np.asarray(await scheduler.evaluate(fills), np.float64)[:, target]
        drops = scores[0] - scores[1:]
        result = np.zeros((height, width))
        for (r, c), drop in zip(corners, drops):
            result[r : r + patch, c : c + patch] = drop
        return result

    return explain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=28)
    parser.add_argument("--metrics", default="mprt,efficient-mprt")
    args = parser.parse_args()
    model = str(DATA / "efficientnet-lite0.onnx")
    layers = len(WeightedModel.load(model).layers)
    yy, xx = np.mgrid[:224, :224]
    given = np.exp(-((yy - 112.0) ** 2 + (xx - 112.0) ** 2) / (2 * 40.0**2))
    config = ExplainConfig().with_overrides(means=(0.485, 0.456, 0.406), stds=(0.229, 0.224, 0.225))
    started = time.perf_counter()
    result = evaluate_sync(
        str(DATA / "ladybird.jpg"),
        model,
        {"gaussian": given},
        args.metrics,
        config=config,
        explainer=occlusion(args.patch),
    )
    wall_s = time.perf_counter() - started
    scores = result.inputs[0].results["gaussian"]
    print(
        json.dumps(
            {
                "layers": layers,
                "patch": args.patch,
                "scores": {label: r.score for label, r in scores.items()},
                "mprt_curve_head": [
                    round(float(v), 4)
                    for v in (scores["mprt"].curve[:6] if "mprt" in scores else [])
                ],
                "queries": result.queries,
                "wall_s": round(wall_s, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
