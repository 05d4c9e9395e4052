"""Many texts through one scheduler, and token ids against strings behind a real Triton.

1. The rows of one ``.jsonl`` file (``explain_text_rows``, what ``rex-stream reviews.jsonl``
   runs) behind a model with 20 ms per call, against the same texts one at a time
   (``explain`` per text): wall time per text, as a ratio, and the mean batch fill.
2. The same texts to a real Triton (PyTriton, ``REX_STREAM_TRITON_PYTHON``) as BYTES (the
   server tokenises) and as INT64 token ids from a local ``tokenizers`` file: wall-time
   ratio, and how many texts give identical maps on both routes.

    .venv/bin/python bench/bench_text_routes.py [--texts 100] [--alone 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_text import make_texts
from rex_stream import ExplainConfig, explain_sync
from rex_stream.api import explain_text_rows_sync, explain_texts_sync
from tests.modes.text.lexicon import save_tokenizer
from tests.servers.triton_server import triton_python

SLOW = "python:tests.modes.text.score_module:slow_score"


def text_config(iters: int) -> ExplainConfig:
    config = ExplainConfig().with_overrides(iters=iters, seed=1, min_box_size=4, chunk_size=1)
    return replace(config, image=replace(config.image, mode="text"))


def rows_against_one_by_one(texts: list[str], alone: int, config: ExplainConfig) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "reviews.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
        started = time.perf_counter()
        results = explain_text_rows_sync(path, SLOW, config, concurrent_inputs=16)
        shared_s = (time.perf_counter() - started) / len(texts)
    started = time.perf_counter()
    singles = [explain_sync(np.array(t), SLOW, config) for t in texts[:alone]]
    alone_s = (time.perf_counter() - started) / alone
    same = sum(np.array_equal(a.responsibility, b.responsibility) for a, b in zip(results, singles))
    fill = np.mean([r.stats.mean_batch for r in results])
    print(f"{len(texts)} rows of one .jsonl, 16 at once, behind 20 ms per call:")
    print(f"  wall per text: {shared_s * 1000:.0f} ms shared, {alone_s * 1000:.0f} ms alone")
    print(f"  one at a time ÷ shared scheduler: {alone_s / shared_s:.1f}x")
    print(f"  mean batch fill (max 32): {fill:.1f}; maps equal to one-at-a-time: {same}/{alone}")


def strings_against_token_ids(texts: list[str], config: ExplainConfig) -> None:
    if triton_python() is None:
        print("Triton: skipped (set REX_STREAM_TRITON_PYTHON)")
        return
    from tests.modes.text.conftest import TextTriton

    server = TextTriton(model_path=Path("unused"), model_name="lexicon")
    server.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            tokenizer = save_tokenizer(Path(folder) / "tokenizer.json")
            tokens = replace(
                config,
                image=replace(config.image, mode_options={"tokenizer": str(tokenizer)}),
            )
            runs = {}
            for label, model, chosen in (
                ("BYTES", "lexicon", config),
                ("token ids", "lexicon-ids", tokens),  # 128 positions: the server's L varies
            ):
                backend = f"triton://{server.grpc_url}/{model}"
                started = time.perf_counter()
                results = explain_texts_sync(texts, backend, chosen, concurrent_inputs=16)
                runs[label] = (time.perf_counter() - started, results)
    finally:
        server.stop()
    (bytes_s, by_strings), (ids_s, by_ids) = runs["BYTES"], runs["token ids"]
    same = sum(
        np.array_equal(a.responsibility, b.responsibility) for a, b in zip(by_strings, by_ids)
    )
    print(f"{len(texts)} texts to a real Triton (gRPC), 16 at once:")
    print(f"  BYTES {bytes_s:.1f} s, token ids {ids_s:.1f} s: ratio {ids_s / bytes_s:.2f}")
    print(f"  identical maps on both routes: {same}/{len(texts)}")
    fills = [np.mean([r.stats.mean_batch for r in rs]) for rs in (by_strings, by_ids)]
    print(f"  mean batch fill (max 16 per call): BYTES {fills[0]:.1f}, ids {fills[1]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=100)
    parser.add_argument("--alone", type=int, default=10)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    texts = make_texts(args.texts)
    config = text_config(args.iters)
    rows_against_one_by_one(texts, args.alone, config)
    strings_against_token_ids(texts, config)


if __name__ == "__main__":
    main()
