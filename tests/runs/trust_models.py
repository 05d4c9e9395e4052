"""Small ``python:`` models for the issue-27 command-line tests (no files, no downloads)."""

from __future__ import annotations

import numpy as np

_WEIGHTS = np.random.default_rng(4).normal(size=(3 * 16 * 16, 5))


def logits(batch: np.ndarray) -> np.ndarray:
    """A fixed linear model (3, 16, 16) → 5 logits."""
    return np.asarray(batch, np.float64).reshape(len(batch), -1) @ _WEIGHTS


def probabilities(batch: np.ndarray) -> np.ndarray:
    """The same model with a softmax at the end, as many deployed models have."""
    scores = logits(batch)
    exp = np.exp(scores - scores.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)
