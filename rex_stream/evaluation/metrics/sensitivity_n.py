"""Sensitivity-n (Ancona et al. 2018, Quantus 0.6.0's ``SensitivityN``): a metric over the set
of inputs.

Each input removes its first j groups of k features (in rank order) and records the change of
f and the sum of the map over each group; the score, the same for every input, is the mean
over j of the correlation of the two across the inputs.
"""

from __future__ import annotations

import math

import numpy as np

from rex_stream.engine.ranking import rank_positions
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.metric import MetricResult, MetricSpec, Params
from rex_stream.evaluation.metrics.removal import (
    BASE,
    check_step,
    cumulative_rows,
    score_of_input,
)
from rex_stream.evaluation.metrics.statistics import pearson
from rex_stream.evaluation.scoring import RowScorer, target_scores


async def sensitivity_n(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Per input: Δ_j = f(x) − f(x minus the first j groups of k) and s_j = Σ a of group j;
    the score (across inputs) is the mean over j of Pearson(Δ_j, s_j) over the inputs."""
    step = int(params["features_in_step"])
    check_step(case, step)
    weights = case.feature_weights(case.prepared(dict(params)))
    order = case.descending(weights)
    position = rank_positions(order)
    steps = min(math.ceil(case.feature_count / step), _sensitivity_steps(case, params))
    counts = [min((j + 1) * step, case.feature_count) for j in range(steps)]
    rng = case.generator("sensitivity-n")
    f_x = await score_of_input(case, scorer, params["softmax"])
    rows = cumulative_rows(case, position, counts, params["perturb_baseline"], rng)
    deltas = f_x - target_scores(await scorer.score_all(rows, case.target), params["softmax"])
    sums = np.array([weights[order[c - step : c]].sum() for c in counts])
    return MetricResult(float("nan"), np.concatenate([deltas, sums]), steps + 1, case.seed)


def _sensitivity_steps(case: Case, params: Params) -> int:
    """Quantus keeps the first int(n_max_percentage · H·W // k) steps."""
    return int(
        float(params["n_max_percentage"]) * case.subject.size // int(params["features_in_step"])
    )


def sensitivity_n_across(results: list[MetricResult], params: Params) -> float:
    """Mean over steps of the correlation across inputs (NaN with fewer than 2 inputs)."""
    curves = [r.curve for r in results if r.curve is not None]
    if len(curves) < 2:
        return float("nan")
    steps = min(c.size for c in curves) // 2
    deltas = np.stack([c[:steps] for c in curves])
    sums = np.stack([c[c.size // 2 : c.size // 2 + steps] for c in curves])
    return float(np.mean([pearson(deltas[:, j], sums[:, j]) for j in range(steps)]))


SPECS = [
    MetricSpec(
        "sensitivity-n",
        "SensitivityN",
        "queries",
        True,
        {**BASE, "features_in_step": 1, "n_max_percentage": 0.8, "softmax": True},
        sensitivity_n,
        across_inputs=sensitivity_n_across,
    )
]
