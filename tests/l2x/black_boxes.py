"""Python-function models for the error paths: one answers labels only, one answers NaN."""

from __future__ import annotations

import numpy as np

input_shape = (30,)


def labels_only(batch: np.ndarray) -> np.ndarray:
    """The class index per row (a label-only endpoint): no scores to learn or descend on."""
    return (batch[:, 0] > 14.0).astype(np.float64)[:, None] * 2.0 + 1.0


def not_finite(batch: np.ndarray) -> np.ndarray:
    """Scores with NaN in them."""
    scores = np.zeros((len(batch), 2))
    scores[:, 1] = np.nan
    return scores
