"""Text mode on 100 short texts of our own through one scheduler (issue 23's targets).

The classifier is the lexicon sentiment model of the text tests (a ``python:`` function on
strings; planted words decide the class). Prints, as ratios: the share of texts whose
explanation alone keeps the model's class, the mean share of words it covers, queries per
text against LIME's default of 5000 samples, and the mean batch fill of the shared scheduler.

    .venv/bin/python bench/bench_text.py [--texts 100] [--concurrent 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rex_stream import ExplainConfig, explain_many_sync
from rex_stream.modes.text_units import split_text
from tests.modes.text.lexicon import NEUTRAL, WEIGHTS, score_texts

SPEC = "python:tests.modes.text.score_module:score"
LIME_SAMPLES = 5000


def make_texts(count: int, seed: int = 0) -> list[str]:
    """Short reviews (8–24 words) of neutral words with one to three planted words."""
    rng = np.random.default_rng(seed)
    planted = sorted(WEIGHTS)
    texts = []
    for _ in range(count):
        words = list(rng.choice(NEUTRAL, size=int(rng.integers(8, 25))))
        for word in rng.choice(planted, size=int(rng.integers(1, 4))):
            words.insert(int(rng.integers(0, len(words) + 1)), str(word))
        texts.append(" ".join(words).capitalize() + ".")
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=100)
    parser.add_argument("--concurrent", type=int, default=16)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    texts = make_texts(args.texts)
    config = ExplainConfig().with_overrides(iters=args.iters, seed=1, min_box_size=4, chunk_size=1)
    config = replace(config, image=replace(config.image, mode="text"))
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index, text in enumerate(texts):
            path = Path(folder) / f"t{index:03d}.txt"
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        started = time.perf_counter()
        results = explain_many_sync(paths, SPEC, config, concurrent_inputs=args.concurrent)
        wall = time.perf_counter() - started
    kept, covered, queries, fills = 0, [], [], []
    for text, result in zip(texts, results):
        units = split_text(text, "word")
        mask = np.asarray(result.mask, bool)
        alone = units.render(mask)
        scores = score_texts([alone])[0]
        kept += int(np.argmax(scores)) == result.target.classification
        words = [u.isalnum() for u in units.strings]
        covered.append(mask[words].sum() / max(1, sum(words)))
        queries.append(result.stats.queries)
        fills.append(result.stats.mean_batch)
    print(f"texts: {len(texts)}, iterations {args.iters}, {args.concurrent} at once, {wall:.1f} s")
    print(f"explanation alone keeps the class: {kept / len(texts):.2%} (target >= 90 %)")
    print(f"mean share of words in the explanation: {np.mean(covered):.3f} (target <= 0.5)")
    print(
        f"queries per text: mean {np.mean(queries):.0f}, max {np.max(queries)}; "
        f"÷ LIME's {LIME_SAMPLES}: {np.mean(queries) / LIME_SAMPLES:.3f} (target <= 0.10)"
    )
    print(f"mean batch fill (shared scheduler, max 32): {np.mean(fills):.1f}")


if __name__ == "__main__":
    main()
