"""Issue 21: behind a slow server the iterations searched at once follow the in-flight window
as it grows, not only as iterations end, so the window has queued work to grow into (asserted
on iterations and calls in flight, never on timings), and the map stays the same as with a
fixed window."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import anyio
import numpy as np
import onnxruntime as ort
import pytest

from rex_stream import ExplainConfig, explain
from rex_stream.adapters.python import PythonBackend
from rex_stream.runs import rex_search
from rex_stream.runs.rex_search import iterations_in_flight

SETTINGS = {"iters": 16, "seed": 4, "min_box_size": 2, "max_batch": 4, "max_inflight": 2}


def _run(
    model: Path, image: Path, adaptive: bool, latency_s: float, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, int, np.ndarray]:
    """(the most iterations searching at once before the first one ended, the most calls with
    the server at once, the map) behind a server that answers after ``latency_s``."""
    session = ort.InferenceSession(str(model))
    calls = [0, 0]  # now, most
    searching = [0, 0, 0]  # now, most before the first ended, ended

    async def far(batch: np.ndarray) -> np.ndarray:
        calls[0] += 1
        calls[1] = max(calls[1], calls[0])
        try:
            await anyio.sleep(latency_s)
            return session.run(None, {"input": batch})[0]
        finally:
            calls[0] -= 1

    real = rex_search.run_iteration

    async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        searching[0] += 1
        if not searching[2]:
            searching[1] = max(searching[1], searching[0])
        try:
            return await real(*args, **kwargs)
        finally:
            searching[0] -= 1
            searching[2] += 1

    monkeypatch.setattr(rex_search, "run_iteration", counted)
    backend = PythonBackend(far, (3, 32, 32), max_batch=4)
    config = ExplainConfig().with_overrides(extract=False, adaptive_inflight=adaptive, **SETTINGS)
    result = anyio.run(partial(explain, image, backend, config))
    return searching[1], calls[1], result.responsibility


def test_iterations_follow_the_growing_window(
    tiny_cnn: Path, tiny_image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    searches, calls, grown = _run(tiny_cnn, tiny_image, True, 0.1, monkeypatch)
    fixed_searches, fixed_calls, fixed = _run(tiny_cnn, tiny_image, False, 0.01, monkeypatch)
    start = iterations_in_flight(SETTINGS["max_batch"] * SETTINGS["max_inflight"], 1)
    assert fixed_searches == start
    assert fixed_calls == SETTINGS["max_inflight"]
    assert searches > start + 1  # admitted while the window grew, before any iteration ended
    assert calls > 2 * SETTINGS["max_inflight"]
    assert np.array_equal(grown, fixed)
