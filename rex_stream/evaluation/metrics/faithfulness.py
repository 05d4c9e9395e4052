"""Faithfulness metrics: remove features as the map ranks them, and watch the model's score.

Each metric is a plan (rows built lazily from the map and a seeded generator) scored through
:class:`RowScorer`, then a reduction. Definitions and defaults are Quantus 0.6.0's (see
``docs/evaluation.md``); the features and baselines are the case's (``Case``), the shared
removal steps :mod:`~rex_stream.evaluation.metrics.removal`'s, the patches
:mod:`~rex_stream.evaluation.metrics.patches`'.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import anyio
import numpy as np

from rex_stream.evaluation.case import Case, Row
from rex_stream.evaluation.metric import MetricResult, MetricSpec, Params
from rex_stream.evaluation.metrics.patches import patch_positions
from rex_stream.evaluation.metrics.removal import (
    BASE,
    Random,
    bounded,
    check_step,
    cumulative_ranking,
    cumulative_rows,
    level_ranking,
    map_scale,
    score_of_input,
)
from rex_stream.evaluation.metrics.statistics import pearson, spearman, trapezoid
from rex_stream.evaluation.scoring import RowScorer, target_scores


async def pixel_flipping(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """c_j = f(x with the j·k most relevant features removed), j = 1…⌈F/k⌉; score = trapz(c)."""
    step = int(params["features_in_step"])
    check_step(case, step)
    steps = math.ceil(case.feature_count / step)
    counts = [min((j + 1) * step, case.feature_count) for j in range(steps)]
    position = await anyio.to_thread.run_sync(cumulative_ranking, case, params, counts)
    rng = case.generator("pixel-flipping")
    rows = cumulative_rows(case, position, counts, params["perturb_baseline"], rng)
    curve = target_scores(await scorer.score_all(rows, case.target), params["softmax"])
    return MetricResult(trapezoid(curve), curve, len(counts), case.seed)


async def region_perturbation(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """d_j = f(x) − f(x without the j most relevant patches), j = 1…regions_evaluation."""
    rng = case.generator("region-perturbation")
    position, count = await anyio.to_thread.run_sync(
        patch_positions, case, params, str(params["order"]).lower(), rng
    )
    regions = min(int(params["regions_evaluation"]), count)
    f_x = await score_of_input(case, scorer, params["softmax"])
    rows = cumulative_rows(
        case, position, list(range(1, regions + 1)), params["perturb_baseline"], rng
    )
    curve = f_x - target_scores(await scorer.score_all(rows, case.target), params["softmax"])
    return MetricResult(trapezoid(curve), curve, regions + 1, case.seed)


async def selectivity(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """c_j = f(x without the j most relevant patches), j = 1…all patches."""
    rng = case.generator("selectivity")
    position, count = await anyio.to_thread.run_sync(patch_positions, case, params, "morf", rng)
    rows = cumulative_rows(
        case, position, list(range(1, count + 1)), params["perturb_baseline"], rng
    )
    curve = target_scores(await scorer.score_all(rows, case.target), params["softmax"])
    return MetricResult(trapezoid(curve), curve, count, case.seed)


async def faithfulness_correlation(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Pearson(Σ_S a, f(x) − f(x without S)) over ``nr_runs`` random subsets S."""
    size = int(params["subset_size"])
    check_step(case, size, "subset_size")
    runs = int(params["nr_runs"])
    weights = case.feature_weights(case.prepared(dict(params)))
    rng = case.generator("faithfulness-correlation")
    subsets: list[np.ndarray] = []

    def rows() -> Iterator[Row]:
        for _ in range(runs):
            chosen = rng.choice(case.feature_count, size, replace=False)
            subsets.append(chosen)
            yield case.removed_set(chosen, case.baseline(params["perturb_baseline"], rng))

    f_x = await score_of_input(case, scorer, params["softmax"])
    scores = target_scores(await scorer.score_all(rows(), case.target), params["softmax"])
    sums = np.array([weights[s].sum() for s in subsets])
    return MetricResult(pearson(sums, f_x - scores), None, runs + 1, case.seed)


async def faithfulness_estimate(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Pearson(Σ_G a, f(x) − f(x without G)) over the groups G of k features in rank order."""
    step = int(params["features_in_step"])
    check_step(case, step)
    rng = case.generator("faithfulness-estimate")
    baseline = params["perturb_baseline"]
    if bounded(case):
        return await _faithfulness_estimate_bounded(case, params, scorer, step, rng)
    weights = case.feature_weights(case.prepared(dict(params)))
    order = case.descending(weights)
    groups = [order[i : i + step] for i in range(0, order.size, step)]
    f_x = await score_of_input(case, scorer, params["softmax"])
    rows = (case.removed_set(group, case.baseline(baseline, rng)) for group in groups)
    scores = target_scores(await scorer.score_all(rows, case.target), params["softmax"])
    sums = np.array([weights[g].sum() for g in groups])
    return MetricResult(pearson(sums, f_x - scores), None, len(groups) + 1, case.seed)


async def _faithfulness_estimate_bounded(
    case: Case, params: Params, scorer: RowScorer, step: int, rng: Random
) -> MetricResult:
    """Faithfulness-estimate of a large input: each group a band of ranks."""
    size = case.feature_count
    counts = [min(end, size) for end in range(step, size + step, step)]
    ranking = await anyio.to_thread.run_sync(level_ranking, case, params, counts)
    bounds = list(zip([0, *counts[:-1]], counts))
    baseline = params["perturb_baseline"]
    f_x = await score_of_input(case, scorer, params["softmax"])
    rows = (
        case.removed_band(ranking, low, high, case.baseline(baseline, rng)) for low, high in bounds
    )
    scores = target_scores(await scorer.score_all(rows, case.target), params["softmax"])
    sums = ranking.band_sums(counts) / map_scale(case, params)
    return MetricResult(pearson(sums, f_x - scores), None, len(bounds) + 1, case.seed)


async def monotonicity_correlation(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Spearman(Σ_G a, v_G): v_G the mean squared change of f when the group G of k features
    (ascending relevance, one at a time) takes ``nr_samples`` baseline draws, over f(x)²."""
    step = int(params["features_in_step"])
    check_step(case, step)
    samples = int(params["nr_samples"])
    softmax = params["softmax"]
    weights = case.feature_weights(case.prepared(dict(params)))
    order = case.ascending(weights)
    groups = [order[i : i + step] for i in range(0, order.size, step)]
    rng = case.generator("monotonicity-correlation")
    baseline = params["perturb_baseline"]
    f_x = await score_of_input(case, scorer, softmax)
    inverse = 1.0 / abs(f_x) ** 2 if abs(f_x) >= float(params["eps"]) else 1.0
    rows = (
        case.removed_set(group, case.baseline(baseline, rng))
        for group in groups
        for _ in range(samples)
    )
    scores = target_scores(await scorer.score_all(rows, case.target), softmax)
    variance = ((scores.reshape(len(groups), samples) - f_x) ** 2).mean(axis=1) * inverse
    sums = np.array([weights[g].sum() for g in groups])
    return MetricResult(spearman(sums, variance), None, len(groups) * samples + 1, case.seed)


def _spec(
    name: str,
    quantus: str,
    compute: Any,
    higher: bool,
    defaults: dict[str, Any],
    *,
    curve: bool = False,
    **axis: Any,
) -> MetricSpec:
    return MetricSpec(name, quantus, "queries", higher, defaults, compute, curve, **axis)


def _flipping_x(params: Params, features: int, length: int) -> np.ndarray:
    """The fraction of features removed at each point of pixel-flipping's curve."""
    step = int(params["features_in_step"])
    counts = np.minimum(np.arange(1, length + 1) * step, features)
    return counts / max(1, features)


def _patch_counts(params: Params, features: int, length: int) -> np.ndarray:
    """The number of patches removed at each point (1, 2, …), when the input's shape is not
    known (a result read without its input)."""
    return np.arange(1, length + 1, dtype=np.float64)


def _patch_fractions(params: Params, shape: tuple[int, ...], length: int) -> np.ndarray:
    """The fraction of the features removed at each point: ``j`` patches of the input's grid
    of ``patch_size`` patches (exact when the patch size divides the input)."""
    patch = int(params["patch_size"])
    count = math.prod(-(-extent // patch) for extent in shape)
    return np.minimum(np.arange(1, length + 1, dtype=np.float64) / max(1, count), 1.0)


SPECS = [
    _spec(
        "pixel-flipping",
        "PixelFlipping",
        pixel_flipping,
        False,
        {**BASE, "features_in_step": 1, "softmax": True},
        curve=True,
        curve_x=_flipping_x,
    ),
    _spec(
        "region-perturbation",
        "RegionPerturbation",
        region_perturbation,
        True,
        {**BASE, "patch_size": 8, "order": "morf", "regions_evaluation": 100, "softmax": True},
        curve=True,
        curve_x=_patch_counts,
        curve_x_spatial=_patch_fractions,
        curve_axis="fraction of features removed (in patches)",
    ),
    _spec(
        "selectivity",
        "Selectivity",
        selectivity,
        False,
        {**BASE, "patch_size": 8, "softmax": True},
        curve=True,
        curve_axis="fraction of patches removed",
    ),
    _spec(
        "faithfulness-correlation",
        "FaithfulnessCorrelation",
        faithfulness_correlation,
        True,
        {**BASE, "nr_runs": 100, "subset_size": 224, "softmax": False},
    ),
    _spec(
        "faithfulness-estimate",
        "FaithfulnessEstimate",
        faithfulness_estimate,
        True,
        {**BASE, "features_in_step": 1, "softmax": False},
    ),
    _spec(
        "monotonicity-correlation",
        "MonotonicityCorrelation",
        monotonicity_correlation,
        True,
        {
            **BASE,
            "abs": True,
            "perturb_baseline": "uniform",
            "features_in_step": 1,
            "nr_samples": 100,
            "eps": 1e-5,
            "softmax": True,
        },
    ),
]
