"""A model-free explainer, slow on purpose, for the model-perturbation kill -9 / resume test:
``--explainer python:tests.evaluation.slow_explainer:explain``.

The map is the input's brightness summed over channels; every call sleeps
``REX_STREAM_TEST_DELAY_S`` seconds.
"""

from __future__ import annotations

import os
import time

import numpy as np


def explain(x: np.ndarray, target: int) -> np.ndarray:
    """|x| summed over the channel axis (x is (C, H, W))."""
    delay = float(os.environ.get("REX_STREAM_TEST_DELAY_S", "0"))
    if delay:
        time.sleep(delay)
    return np.abs(np.asarray(x, np.float64)).sum(axis=0)
