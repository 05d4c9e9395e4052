"""The progress line's traffic facts: call latency, calls in flight, an ETA, and how long a
server has been down (issue 27, item 12), from a real run over a Python backend that stops
answering for a while."""

from __future__ import annotations

import re
import time
from pathlib import Path

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


class _Outage:
    """A Python model that answers its first ``healthy`` calls, then fails every call for
    ``down_s`` seconds ("restarting"), then answers again; every call takes 50 ms."""

    def __init__(self, healthy: int, down_s: float, channels: int) -> None:
        self.calls = 0
        self.healthy, self.down_s, self.channels = healthy, down_s, channels
        self.down_at = 0.0

    async def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        number = self.calls
        await anyio.sleep(0.05)
        if number == self.healthy + 1:
            self.down_at = time.monotonic()
        if self.down_at and time.monotonic() - self.down_at < self.down_s:
            raise TransientBackendError("HTTP 503: restarting")
        seen = batch.reshape(len(batch), -1).mean(axis=1)
        return np.stack([0.5 - seen, seen + 0.1], axis=1).astype(np.float32)


def _has_every_fact(lines: list[str]) -> None:
    """The single-input line's facts: call latency, calls in flight, an ETA, the downtime."""
    assert any(re.search(r"call \d+ ms", line) for line in lines), lines[-3:]
    assert all(re.search(r"\d+ in flight", line) for line in lines), lines[-3:]
    assert any(re.search(r"ETA \d+:\d\d", line) for line in lines), lines[-3:]
    assert any(re.search(r"server down \d+ s", line) for line in lines), lines[-3:]


def test_a_directory_run_shows_the_single_input_lines_traffic(tmp_path: Path) -> None:
    from PIL import Image

    from rex_stream.cli.directory_display import DirectoryDisplay
    from rex_stream.cli.terminal import traffic_text
    from rex_stream.runs.many import explain_many

    sources = []
    for number in range(3):
        path = tmp_path / f"in{number}.png"
        pixels = np.random.default_rng(number).integers(0, 255, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        sources.append(str(path))
    model = _Outage(healthy=6, down_s=1.5, channels=3)
    backend = PythonBackend(model, (3, 16, 16), max_inflight=2)
    config = ExplainConfig().with_overrides(iters=4, search_limit=120, seed=1, max_batch=4)
    display = DirectoryDisplay(False, len(sources), [Path(s).name for s in sources])
    lines: list[str] = []

    def heard(index: int, event: Progress) -> None:
        display.input_progress(index, event)
        overall = display.overall()
        assert overall is not None
        line = display.status()
        assert line.endswith(traffic_text(overall))  # the one definition, not a copy
        lines.append(line)

    def finished(outcome: object) -> None:
        display.input_finished(sources.index(str(outcome.subject.source)), "explained")  # type: ignore[attr-defined]

    async def run() -> None:
        await explain_many(sources, backend, config, on_progress=heard, on_result=finished,
                           concurrent_inputs=2)  # fmt: skip

    anyio.run(run)
    assert model.down_at, model.calls
    assert display.explained == 3
    _has_every_fact(lines)


def test_an_evaluation_shows_the_single_input_lines_traffic_also_while_down() -> None:
    from rex_stream import evaluate
    from rex_stream.cli.terminal import traffic_text

    model = _Outage(healthy=3, down_s=1.5, channels=1)
    backend = PythonBackend(model, (1, 16, 16), max_inflight=2)
    image = np.random.default_rng(0).random((1, 16, 16)).astype(np.float32)
    attribution = np.random.default_rng(1).random((16, 16))
    events: list[Progress] = []
    answered: list[int] = []

    async def run() -> None:
        config = ExplainConfig().with_overrides(max_batch=4)
        await evaluate(image, backend, attribution, "pixel-flipping:features_in_step=8",
                       config=config, on_event=events.append,
                       on_progress=lambda done, planned: answered.append(done))  # fmt: skip

    anyio.run(run)
    assert model.down_at, model.calls
    assert events[-1].iterations_done == answered[-1] > 0  # rows answered, as on_progress says
    assert events[-1].iterations_total >= events[-1].iterations_done
    down = [e for e in events if e.down_s is not None]
    # the ticks go on while no row is answered, so the line says how long it has been down
    assert down and max(e.down_s for e in down) >= 0.8, [e.down_s for e in events]  # type: ignore[type-var]
    _has_every_fact([traffic_text(e) for e in events])
