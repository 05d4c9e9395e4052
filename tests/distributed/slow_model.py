"""A deterministic numpy classifier for Dask tests, importable on workers as
``python:tests.distributed.slow_model:score``.

Each call sleeps ``REX_STREAM_TEST_DELAY_S`` (so a worker can be killed mid-input), fails while
``REX_STREAM_TEST_FAIL`` is set, and an all-white input (every value 1.0) kills the process
that scores it: a poison input.
"""

from __future__ import annotations

import os
import time

import numpy as np

input_shape = (3, 32, 32)
_WEIGHTS = np.random.default_rng(5).normal(0.0, 1.0, (10, *input_shape)).astype(np.float32)


def score(batch: np.ndarray) -> np.ndarray:
    """Ten logits per row; each row is scored alone, so batching never changes a result."""
    if os.environ.get("REX_STREAM_TEST_FAIL"):
        raise ValueError("the model failed")
    delay = float(os.environ.get("REX_STREAM_TEST_DELAY_S", "0"))
    if delay:
        time.sleep(delay)
    rows = batch.reshape(batch.shape[0], -1)
    if np.any(rows.min(axis=1) >= 0.999):
        os._exit(17)  # the poison input: its worker dies every time
    flat = _WEIGHTS.reshape(10, -1)
    return np.stack([(rows * w).sum(axis=1) for w in flat], axis=1).astype(np.float32)


def set_failing(failing: bool) -> None:
    """Make every later call in this process fail (``client.run`` it on the workers)."""
    if failing:
        os.environ["REX_STREAM_TEST_FAIL"] = "1"
    else:
        os.environ.pop("REX_STREAM_TEST_FAIL", None)
