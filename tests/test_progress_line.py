"""The progress line's traffic facts: call latency, calls in flight, an ETA, and how long a
server has been down (issue 27, item 12), from a real run over a Python backend that stops
answering for a while."""

from __future__ import annotations

import time

import anyio
import numpy as np

from rex_stream import ExplainConfig, explain
from rex_stream.adapters.python import PythonBackend
from rex_stream.errors import TransientBackendError
from rex_stream.progress import Progress


def test_progress_reports_latency_in_flight_eta_and_an_outage() -> None:
    started = time.monotonic()
    calls = {"n": 0, "down_at": 0.0}

    async def model(batch: np.ndarray) -> np.ndarray:
        """Answers its first 8 calls, then fails every call for 1.5 s, then answers again."""
        calls["n"] += 1
        number = calls["n"]
        await anyio.sleep(0.05)
        if number == 9:
            calls["down_at"] = time.monotonic()
        if calls["down_at"] and time.monotonic() - calls["down_at"] < 1.5:
            raise TransientBackendError("HTTP 503: restarting")
        seen = batch.reshape(len(batch), -1).mean(axis=1)
        return np.stack([0.5 - seen, seen + 0.1], axis=1).astype(np.float32)

    image = np.random.default_rng(0).random((1, 16, 16)).astype(np.float32)
    config = ExplainConfig()
    config = config.with_overrides(iters=6, search_limit=300, seed=1, max_batch=4)
    events: list[Progress] = []
    backend = PythonBackend(model, (1, 16, 16), max_inflight=2)

    async def run() -> None:
        await explain(image, backend, config, on_progress=events.append)

    anyio.run(run)
    assert calls["down_at"], calls
    assert time.monotonic() - started > 1.5  # it lived through the outage
    assert any(e.latency_s >= 0.02 for e in events)
    assert any(e.in_flight >= 1 for e in events)
    down = [e.down_s for e in events if e.down_s is not None]
    assert down and max(down) >= 0.4, [e.down_s for e in events]
    assert events[-1].down_s is None  # answering again at the end
    with_eta = [e for e in events if 0 < e.iterations_done < e.iterations_total]
    assert with_eta and all(e.eta_s is not None and e.eta_s > 0 for e in with_eta)
    assert "in flight" in events[-1].traffic_note
    assert any("server down" in e.traffic_note for e in events)
