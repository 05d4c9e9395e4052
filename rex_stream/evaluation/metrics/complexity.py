"""Complexity metrics: properties of the map alone (no model queries)."""

from __future__ import annotations

import numpy as np

from rex_stream.evaluation.case import Case
from rex_stream.evaluation.metric import MetricResult, MetricSpec, Params
from rex_stream.evaluation.scoring import RowScorer


async def sparseness(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Gini index of the map (Chalasani et al.): 1 is one element, 0 is uniform."""
    a = np.sort(case.prepared(dict(params)).reshape(-1) + 1e-7)
    n = a.size
    index = np.arange(1, n + 1)
    score = ((2 * index - n - 1) * a).sum() / (n * a.sum())
    return MetricResult(float(score), seed=case.seed)


async def complexity(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Entropy of the map's share per element (Bhatt et al.): lower is simpler."""
    a = case.prepared(dict(params)).reshape(-1)
    share = a / np.abs(a).sum()
    return MetricResult(float(-(share * np.log(share + 1e-12)).sum()), seed=case.seed)


async def effective_complexity(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """How many elements exceed ``eps`` (Nguyen & Martínez): lower is simpler."""
    a = case.prepared(dict(params)).reshape(-1)
    return MetricResult(float(np.sum(a > float(params["eps"]))), seed=case.seed)


_BASE = {"abs": True, "normalise": True}

SPECS = [
    MetricSpec("sparseness", "Sparseness", "map", True, _BASE, sparseness),
    MetricSpec("complexity", "Complexity", "map", False, _BASE, complexity),
    MetricSpec(
        "effective-complexity",
        "EffectiveComplexity",
        "map",
        False,
        {**_BASE, "eps": 1e-5},
        effective_complexity,
    ),
]
