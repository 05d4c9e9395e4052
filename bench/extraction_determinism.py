"""Extraction across batch sizes: the same map, extracted by every strategy at several
(batch, calls in flight) settings; prints whether the masks agree and the queries spent.

    python bench/extraction_determinism.py --iters 2 --seed 0 dog.jpg tennis.jpg …
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anyio
import numpy as np

from rex_stream import ExplainConfig, explain_sync
from rex_stream.causal.extraction import extract_contrastive, extract_global, extract_spatial
from rex_stream.config import SchedulerConfig
from rex_stream.engine.backend import BackendSettings, open_backend
from rex_stream.engine.scheduler import Scheduler
from rex_stream.modes import load_subject
from rex_stream.result import Explanation

MODEL = Path(__file__).resolve().parents[1] / "rex_stream" / "data" / "efficientnet-lite0.onnx"
STRATEGIES = {
    "global": extract_global,
    "spatial": extract_spatial,
    "contrastive": extract_contrastive,
}
CARRIAGES = [(1, 1), (8, 1), (32, 4)]


async def extract_everywhere(
    photo: Path, result: Explanation, config: ExplainConfig
) -> dict[tuple[str, int, int], tuple[np.ndarray, int]]:
    """Every strategy at every (batch, in flight) setting: (mask, queries)."""
    found = {}
    for batch, inflight in CARRIAGES:
        backend = await open_backend(str(MODEL), BackendSettings(max_inflight=inflight))
        try:
            settings = SchedulerConfig(max_batch=batch, max_inflight=inflight)
            async with Scheduler(backend, settings) as scheduler:
                subject = load_subject(photo, backend.info, config)
                for name, extract in STRATEGIES.items():
                    explanation = await extract(
                        subject,
                        result.responsibility,
                        result.target,
                        scheduler,
                        config.extraction,
                        config.scoring,
                    )
                    found[(name, batch, inflight)] = (explanation.mask, explanation.queries)
        finally:
            await backend.aclose()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = ExplainConfig().with_overrides(
        means=(0.485, 0.456, 0.406), stds=(0.229, 0.224, 0.225), iters=args.iters, seed=args.seed
    )
    print("photo | strategy | masks agree | queries at " + ", ".join(map(str, CARRIAGES)))
    for photo in args.photos:
        result = explain_sync(photo, str(MODEL), config, extract=False)
        found = anyio.run(extract_everywhere, photo, result, config)
        for name in STRATEGIES:
            runs = [found[(name, *carriage)] for carriage in CARRIAGES]
            agree = all(np.array_equal(mask, runs[0][0]) for mask, _ in runs)
            print(f"{photo.name} | {name} | {agree} | {[queries for _, queries in runs]}")


if __name__ == "__main__":
    main()
