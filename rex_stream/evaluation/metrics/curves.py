"""Insertion, deletion and Arya's monotonicity: the model's score as ranked features are
revealed on the baseline or removed from the input."""

from __future__ import annotations

import math

import numpy as np

from rex_stream.engine.ranking import rank_positions
from rex_stream.evaluation.case import Case, Row
from rex_stream.evaluation.metric import MetricResult, MetricSpec, Params
from rex_stream.evaluation.metrics.statistics import trapezoid
from rex_stream.evaluation.scoring import RowScorer, target_scores


def _counts(total: int, step: int, start: int) -> list[int]:
    return [*range(start, total, step), total]


def _revealed(case: Case, reverse: np.ndarray, count: int, value: float | None) -> Row:
    """The baseline with the ``count`` features of lowest position shown (``reverse`` is
    ``size − 1 − position``)."""
    return case.removed_first(reverse, reverse.size - count, value)


def area_over_fraction(curve: np.ndarray) -> float:
    """Trapezoid area of a curve sampled at equal steps over [0, 1]."""
    if curve.size < 2:
        return float(curve.mean()) if curve.size else 0.0
    return trapezoid(curve) / (curve.size - 1)


async def _curve(case: Case, params: Params, scorer: RowScorer, insert: bool) -> MetricResult:
    weights = case.feature_weights(case.prepared(dict(params)))
    position = rank_positions(case.descending(weights))
    step = max(1, math.ceil(case.feature_count * float(params["step_fraction"])))
    counts = _counts(case.feature_count, step, 0)
    rng = case.generator("insertion" if insert else "deletion")
    value = case.baseline(params["perturb_baseline"], rng)
    reverse = position.size - 1 - position
    rows = (
        _revealed(case, reverse, n, value) if insert else case.removed_first(position, n, value)
        for n in counts
    )
    curve = target_scores(await scorer.score_all(rows, case.target), params["softmax"])
    return MetricResult(area_over_fraction(curve), curve, len(counts), case.seed)


async def insertion(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Reveal the most relevant features first on the baseline; area over the fraction shown."""
    return await _curve(case, params, scorer, insert=True)


async def deletion(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Remove the most relevant features first; area over the fraction removed."""
    return await _curve(case, params, scorer, insert=False)


async def monotonicity_arya(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """1 if the score never falls as features are added to the baseline from the least to the
    most relevant, k at a time (Arya et al. 2019). Quantus 0.6.0 writes the baseline into an
    all-baseline image at every step, so it always answers True; this is the paper's test."""
    step = int(params["features_in_step"])
    weights = case.feature_weights(case.prepared(dict(params)))
    position = rank_positions(case.ascending(weights))
    counts = _counts(case.feature_count, step, step)
    rng = case.generator("monotonicity-arya")
    value = case.baseline(params["perturb_baseline"], rng)
    reverse = position.size - 1 - position
    rows = (_revealed(case, reverse, n, value) for n in counts)
    curve = target_scores(await scorer.score_all(rows, case.target), params["softmax"])
    score = float(np.all(np.diff(curve) >= 0))
    return MetricResult(score, curve, len(counts), case.seed)


_BASE = {"abs": False, "normalise": True, "perturb_baseline": "black", "softmax": True}


def _insertion_x(params: Params, features: int, length: int) -> np.ndarray:
    """The fraction of features shown (insertion) or removed (deletion) at each point."""
    step = max(1, math.ceil(features * float(params["step_fraction"])))
    counts = _counts(features, step, 0)
    if len(counts) != length:  # not this input's curve: equal steps over [0, 1]
        return np.linspace(0.0, 1.0, length)
    return np.asarray(counts, np.float64) / max(1, features)


def _arya_x(params: Params, features: int, length: int) -> np.ndarray:
    """The fraction of features added at each point of monotonicity-arya's curve."""
    counts = _counts(features, int(params["features_in_step"]), int(params["features_in_step"]))
    if len(counts) != length:
        return np.arange(1, length + 1) / max(1, length)
    return np.asarray(counts, np.float64) / max(1, features)


SPECS = [
    MetricSpec(
        "insertion",
        "(rex-stream)",
        "queries",
        True,
        {**_BASE, "step_fraction": 0.01},
        insertion,
        curve=True,
        curve_x=_insertion_x,
        curve_axis="fraction of features shown",
    ),
    MetricSpec(
        "deletion",
        "(rex-stream)",
        "queries",
        False,
        {**_BASE, "step_fraction": 0.01},
        deletion,
        curve=True,
        curve_x=_insertion_x,
    ),
    MetricSpec(
        "monotonicity-arya",
        "Monotonicity",
        "queries",
        True,
        {**_BASE, "abs": True, "features_in_step": 1},
        monotonicity_arya,
        curve=True,
        curve_x=_arya_x,
        curve_axis="fraction of features added (least relevant first)",
    ),
]
