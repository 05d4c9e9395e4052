"""Turning model output rows into verdicts: predicted class and its confidence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rex_stream.config import ScoreKind, ScoringConfig
from rex_stream.errors import BackendError, ConfigError

#: Confidences are rounded to this many decimals, so that the last-bit differences between
#: batch sizes in a backend's kernels do not change weighted maps.
CONFIDENCE_DECIMALS = 6


@dataclass(frozen=True)
class Target:
    """The class being explained and the model's confidence in it on the unmodified input."""

    classification: int
    confidence: float


@dataclass(frozen=True)
class Verdicts:
    """One batch of verdicts: ``classes[i]`` with ``confidences[i]``; ``target_confidences[i]``
    is the confidence given to the target class (used by insertion/deletion curves)."""

    classes: np.ndarray
    confidences: np.ndarray
    target_confidences: np.ndarray

    def __len__(self) -> int:
        return len(self.classes)


def to_probabilities(scores: np.ndarray, scoring: ScoringConfig) -> np.ndarray:
    """Rows of class probabilities from raw model output (softmax for logits, as ReX does)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2:
        raise BackendError(
            f"the model returned scores of shape {scores.shape}, expected (n, classes)"
        )
    if not np.isfinite(scores).all():
        raise BackendError("the model returned NaN or infinite scores")
    if scores.shape[1] == 1:
        p = scores[:, 0]
        if scoring.scores is ScoreKind.LOGITS and scoring.binary_threshold is None:
            p = 1.0 / (1.0 + np.exp(-p))
        return np.stack([1.0 - p, p], axis=1)
    if scoring.scores is ScoreKind.PROBABILITIES:
        if scores.min() < -1e-6 or scores.max() > 1 + 1e-6:
            outside = scores.max() if scores.max() > 1 else scores.min()
            raise ConfigError(
                f"--scores probabilities, but the model returned {outside:.4g}, outside [0, 1]: "
                "its outputs look like logits (drop --scores probabilities)"
            )
        return scores
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def judge(scores: np.ndarray, scoring: ScoringConfig, target: int | None) -> Verdicts:
    """Verdicts for a batch of score rows; ``target`` selects ``target_confidences``."""
    probs = to_probabilities(scores, scoring)
    if probs.shape[1] == 2 and scoring.binary_threshold is not None:
        classes = (probs[:, 1] >= scoring.binary_threshold).astype(np.int64)
    else:
        classes = probs.argmax(axis=1)
    rows = np.arange(len(probs))
    confidences = np.round(probs[rows, classes], CONFIDENCE_DECIMALS)
    if target is not None and target < probs.shape[1]:
        target_conf = np.round(probs[:, target], CONFIDENCE_DECIMALS)
    else:
        target_conf = np.zeros(len(probs))
    return Verdicts(classes, confidences, target_conf)
