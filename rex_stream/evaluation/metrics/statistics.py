"""Correlations and areas the metrics reduce their curves with (scipy's, as Quantus uses).

scipy comes with ``pip install 'rex-stream[evaluation]'``; it is imported when a metric first
reduces, so ``import rex_stream`` does not need it.
"""

from __future__ import annotations

import warnings
from types import ModuleType

import numpy as np

from rex_stream.engine.install_hint import install_command
from rex_stream.errors import ConfigError


def _scipy() -> ModuleType:
    try:
        import scipy.integrate
        import scipy.stats
    except ImportError:
        raise ConfigError(
            f"the evaluation metrics need scipy: {install_command('evaluation')}"
        ) from None
    return scipy


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of two vectors, clipped to [−1, 1]; NaN when either is constant, shorter
    than two, or holds a NaN or infinity."""
    x = np.asarray(a, np.float64).reshape(-1)
    y = np.asarray(b, np.float64).reshape(-1)
    if x.size < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    if np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    stats = _scipy().stats
    with warnings.catch_warnings():
        # a nearly constant vector still has a correlation: scipy computes it, and says so
        warnings.simplefilter("ignore", stats.NearConstantInputWarning)
        r = float(stats.pearsonr(x, y).statistic)
    return float(np.clip(r, -1.0, 1.0))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (``scipy.stats.rankdata``)."""
    return np.asarray(_scipy().stats.rankdata(np.ravel(values), method="average"), np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two vectors (Pearson's r of their average ranks)."""
    return pearson(average_ranks(a), average_ranks(b))


def trapezoid(curve: np.ndarray) -> float:
    """Area under a curve sampled at unit steps (``np.trapz(curve, dx=1)``, Quantus' AUC)."""
    values = np.asarray(curve, np.float64)
    if values.size < 2:
        return 0.0
    return float(_scipy().integrate.trapezoid(values, dx=1.0))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` separating ``labels`` (ties count half): the
    Mann–Whitney U of the positives' ranks over positives × negatives."""
    inside = np.asarray(labels, bool).reshape(-1)
    positives, negatives = int(inside.sum()), int((~inside).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = average_ranks(np.asarray(scores, np.float64))
    u = ranks[inside].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))
