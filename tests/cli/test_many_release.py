"""Directory runs hand each result on as it finishes and keep none: memory is flat in inputs."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import anyio
import numpy as np
from PIL import Image

from rex_stream import ExplainConfig
from rex_stream.result import Explanation
from rex_stream.runs.many import InputFailure, explain_many


def _photos(directory: Path, count: int) -> list[str]:
    rng = np.random.default_rng(3)
    paths = []
    for i in range(count):
        path = directory / f"p{i}.png"
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_results_are_released_once_reported(tiny_cnn: Path, tmp_path: Path) -> None:
    sources = _photos(tmp_path, 6)
    alive: list[weakref.ref[Explanation]] = []
    seen: list[str] = []

    def report(outcome: Explanation | InputFailure) -> None:
        assert isinstance(outcome, Explanation)
        seen.append(outcome.subject.source or "")
        alive.append(weakref.ref(outcome))

    config = ExplainConfig().with_overrides(iters=2, seed=1, min_box_size=8, analyse=False)

    async def run(keep: bool) -> list[Explanation | InputFailure]:
        return await explain_many(
            sources, str(tiny_cnn), config, on_result=report, keep_results=keep
        )

    assert anyio.run(run, False) == []
    gc.collect()
    assert sorted(seen) == sorted(sources)
    assert all(ref() is None for ref in alive)  # nothing kept them
    alive.clear()
    kept = anyio.run(run, True)
    assert len(kept) == 6 and all(ref() is not None for ref in alive)
