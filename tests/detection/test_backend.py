"""The detector backend passes the scheduler's in-flight window on to the backend it wraps:
without that, the wrapped backend's own gate stays at its opening size, the calls the window
grows by queue there, their round trips look slowed, and the window stops growing."""

from __future__ import annotations

import threading

import anyio
import numpy as np

from rex_stream.adapters.python import PythonBackend
from rex_stream.detection import DetectionBackend, layout_named
from tests.detection.planted import numpy_detections, planted_tensor


class Concurrency:
    """A sync detector that records the most calls it ran at once: each call waits (up to
    a second) until ``target`` calls have been in at once, so a loaded machine's slow
    thread starts cannot hide the overlap."""

    def __init__(self, target: int) -> None:
        self.now = self.peak = 0
        self.target = target
        self.changed = threading.Condition()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.changed:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.changed.notify_all()
            self.changed.wait_for(lambda: self.peak >= self.target, timeout=1.0)
            self.now -= 1
        return numpy_detections(batch)


def _peak(calls: int, window: int | None) -> int:
    counted = Concurrency(calls)
    inner = PythonBackend(counted, (3, 64, 64), max_inflight=2)
    detector = DetectionBackend(inner, layout_named("boxes"))
    if window is not None:
        detector.follow_inflight(window)
    batch = planted_tensor([(1, 1, 0)])[None]

    async def main() -> None:
        async with anyio.create_task_group() as group:
            for _ in range(calls):
                group.start_soon(detector.infer, batch)

    anyio.run(main)
    return counted.peak


def test_the_window_reaches_the_wrapped_backend() -> None:
    assert _peak(6, None) == 2  # the wrapped backend's gate as it was opened
    assert _peak(6, 6) == 6  # the scheduler's window, passed on
