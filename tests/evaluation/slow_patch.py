"""The patch model in numpy, slow on purpose, for the meta-evaluation kill -9 / resume test:
``--backend python:tests.evaluation.slow_patch:score``.

logits = [2, 1/9 · Σ patch pixels] per row, each row scored alone (so batching never changes a
result); every call sleeps ``REX_STREAM_TEST_DELAY_S`` seconds.
"""

from __future__ import annotations

import os
import time

import numpy as np

from tests.onnx_models import patch_weights

input_shape = (1, 24, 24)
max_batch = 16
_WEIGHTS = patch_weights(24).reshape(-1).astype(np.float64) / 9.0


def score(batch: np.ndarray) -> np.ndarray:
    """Two logits per row."""
    delay = float(os.environ.get("REX_STREAM_TEST_DELAY_S", "0"))
    if delay:
        time.sleep(delay)
    rows = batch.reshape(batch.shape[0], -1).astype(np.float64)
    seen = np.array([row @ _WEIGHTS for row in rows])
    return np.stack([np.full_like(seen, 2.0), seen], axis=1).astype(np.float32)
