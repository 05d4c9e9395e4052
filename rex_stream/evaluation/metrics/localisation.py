"""Localisation metrics: how well the map agrees with a ground-truth mask (``--mask``)."""

from __future__ import annotations

import numpy as np

from rex_stream.errors import ConfigError
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.metric import MetricResult, MetricSpec, Params
from rex_stream.evaluation.metrics.statistics import roc_auc
from rex_stream.evaluation.scoring import RowScorer


def _flat(case: Case, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """The prepared map and the mask, flat; NaN results when the mask is empty."""
    if case.mask is None:
        raise ConfigError("localisation metrics need a ground-truth mask (--mask)")
    return case.prepared(dict(params)).reshape(-1), case.mask.reshape(-1).astype(bool)


def _result(case: Case, value: float, mask: np.ndarray) -> MetricResult:
    return MetricResult(float("nan") if not mask.any() else float(value), seed=case.seed)


async def pointing_game(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """1 if an element of maximal attribution lies inside the mask (Zhang et al.)."""
    a, s = _flat(case, params)
    hit = float(np.any(s & (a == a.max())))
    if params["weighted"] and hit:
        hit = 1.0 - s.sum() / s.size
    return _result(case, hit, s)


async def attribution_localisation(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Share of the (positive) attribution inside the mask (Kohlbrenner et al.)."""
    a, s = _flat(case, params)
    if params["positive_attributions"]:
        a = np.clip(a, 0, None)
    ratio = (a * s).sum() / (a.sum() + 1e-9)
    if ratio > 1:
        ratio = float("nan")
    if params["weighted"]:
        ratio *= s.sum() / s.size
    return _result(case, ratio, s)


async def top_k_intersection(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Share of the k most relevant elements that lie inside the mask (Theiner et al.)."""
    a, s = _flat(case, params)
    k = int(params["k"])
    if k > a.size:
        raise ConfigError(f"top-k-intersection: k={k} is larger than the {a.size} elements")
    score = s[case.descending(a)[:k]].mean()
    if params["concept_influence"]:
        score *= a.size / max(1, s.sum())
    return _result(case, score, s)


async def relevance_rank_accuracy(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Share of the |mask| most relevant elements that lie inside the mask (Arras et al.)."""
    a, s = _flat(case, params)
    size = int(s.sum())
    return _result(case, s[case.descending(a)[:size]].sum() / max(1, size), s)


async def relevance_mass_accuracy(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Attribution inside the mask over all attribution (Arras et al.)."""
    a, s = _flat(case, params)
    return _result(case, (a * s).sum() / a.sum(), s)


async def auc(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Area under the ROC curve of the map as a detector of the mask (Fawcett)."""
    a, s = _flat(case, params)
    return _result(case, roc_auc(s, a), s)


_BASE = {"abs": False, "normalise": True}


def _spec(name: str, quantus: str, compute: object, defaults: dict[str, object]) -> MetricSpec:
    return MetricSpec(name, quantus, "mask", True, defaults, compute)  # type: ignore[arg-type]


SPECS = [
    _spec("pointing-game", "PointingGame", pointing_game, {**_BASE, "weighted": False}),
    _spec(
        "attribution-localisation",
        "AttributionLocalisation",
        attribution_localisation,
        {**_BASE, "abs": True, "weighted": False, "positive_attributions": False},
    ),
    _spec(
        "top-k-intersection",
        "TopKIntersection",
        top_k_intersection,
        {**_BASE, "k": 1000, "concept_influence": False},
    ),
    _spec("relevance-rank-accuracy", "RelevanceRankAccuracy", relevance_rank_accuracy, dict(_BASE)),
    _spec("relevance-mass-accuracy", "RelevanceMassAccuracy", relevance_mass_accuracy, dict(_BASE)),
    _spec("auc", "AUC", auc, dict(_BASE)),
]
