"""A ``python:`` model for the kill tests: the tiny CNN (``SLOW_MODEL``) that writes how many
rows it has scored to ``SLOW_ROWS_FILE`` and sleeps ``SLOW_DELAY_S`` per call."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import onnxruntime as ort

_session: ort.InferenceSession | None = None
_rows = 0
_lock = threading.Lock()


def score(batch: np.ndarray) -> np.ndarray:
    """Score ``batch`` with the tiny CNN and count its rows."""
    global _session, _rows
    if _session is None:
        _session = ort.InferenceSession(os.environ["SLOW_MODEL"])
    time.sleep(float(os.environ.get("SLOW_DELAY_S", "0")))
    out = _session.run(None, {"input": batch.astype(np.float32)})[0]
    path = os.environ["SLOW_ROWS_FILE"]
    with _lock:  # calls run in worker threads at once
        _rows += len(batch)
        with open(path + ".tmp", "w") as handle:
            handle.write(str(_rows))
        os.replace(path + ".tmp", path)
    return out
