"""Turning model output rows into verdicts: predicted class and its confidence.

Classification reads ``(n, classes)`` score rows. A target that reads other answers (a
detector's rows of boxes) brings its own :class:`VerdictRule` as the run's scoring settings;
:func:`judge` hands the rows to it, so every phase of a method (search, extraction, curves)
asks the target for its verdicts without knowing what the answer looks like.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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


@runtime_checkable
class VerdictRule(Protocol):
    """Scoring settings that judge answer rows themselves (e.g. detections against a target
    box): a mutant passes when ``classes[i] == target`` and its confidence is high enough."""

    def verdicts(self, scores: np.ndarray, target: int | None) -> Verdicts:
        """Verdicts for a batch of answer rows, in order."""
        ...


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


def probabilities_read_as_logits(scores: np.ndarray, scoring: ScoringConfig) -> str | None:
    """A one-line warning when rows read as logits look like probabilities already (every
    value in [0, 1], every row summing to 1): a second softmax flattens them, so confidences
    shrink towards 1/classes and weighted maps change. None when nothing looks wrong."""
    if isinstance(scoring, VerdictRule) or scoring.scores is not ScoreKind.LOGITS:
        return None
    rows = np.asarray(scores, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] < 3 or not np.isfinite(rows).all():
        return None
    if rows.min() < 0.0 or rows.max() > 1.0:
        return None
    if not np.allclose(rows.sum(axis=1), 1.0, atol=1e-3):
        return None
    return (
        "the model's scores look like probabilities (each row in [0, 1], summing to 1), but "
        "they are read as logits and get a second softmax, which flattens the confidences: "
        "pass --scores probabilities (or [rex] scores in rex.toml) if they are"
    )


def judge(scores: np.ndarray, scoring: ScoringConfig, target: int | None) -> Verdicts:
    """Verdicts for a batch of score rows; ``target`` selects ``target_confidences``.

    Scoring settings that are a :class:`VerdictRule` judge the rows themselves."""
    if isinstance(scoring, VerdictRule):
        return scoring.verdicts(scores, target)
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
