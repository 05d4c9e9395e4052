"""Correlations and areas the metrics reduce their curves with (numpy only)."""

from __future__ import annotations

import numpy as np


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of two vectors; NaN when either is constant (as scipy)."""
    a = np.asarray(a, np.float64) - np.mean(a, dtype=np.float64)
    b = np.asarray(b, np.float64) - np.mean(b, dtype=np.float64)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    if norm == 0.0 or not np.isfinite(norm):
        return float("nan")
    return float(np.clip(np.dot(a, b) / norm, -1.0, 1.0))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (scipy's ``rankdata``)."""
    values = np.asarray(values)
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two vectors."""
    return pearson(average_ranks(np.ravel(a)), average_ranks(np.ravel(b)))


def trapezoid(curve: np.ndarray) -> float:
    """Area under a curve sampled at unit steps (``np.trapz(curve, dx=1)``, Quantus' AUC)."""
    curve = np.asarray(curve, np.float64)
    if curve.size < 2:
        return 0.0
    return float(np.sum((curve[1:] + curve[:-1]) / 2.0))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` separating ``labels`` (ties count half)."""
    labels = np.asarray(labels, bool).ravel()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = average_ranks(np.asarray(scores, np.float64).ravel())
    u = ranks[labels].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))
