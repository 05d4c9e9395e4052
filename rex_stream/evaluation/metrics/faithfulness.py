"""Faithfulness metrics: perturb the input as the map ranks it, and watch the model's score.

Each metric is a plan (rows built lazily from the map and a seeded generator) scored through
:class:`RowScorer`, then a reduction. Definitions and defaults are Quantus 0.6.0's (see
``docs/evaluation.md``); the features and baselines are the case's (``Case``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import numpy as np

from rex_stream.engine.ranking import rank_positions
from rex_stream.errors import ConfigError, InputError
from rex_stream.evaluation.case import Case, Row
from rex_stream.evaluation.metric import MetricResult, MetricSpec, Params
from rex_stream.evaluation.metrics.statistics import pearson, spearman, trapezoid
from rex_stream.evaluation.ranked import (
    LARGE_FEATURES,
    LevelRanking,
    PatchRanking,
    Ranking,
    is_large,
    slab_ranges,
)
from rex_stream.evaluation.scoring import RowScorer, target_scores

Random = np.random.Generator | np.random.RandomState


def _check_step(case: Case, step: int, name: str = "features_in_step") -> None:
    if step > case.feature_count:
        raise ConfigError(f"{name}={step} is larger than the {case.feature_count} features")


async def _f_x(case: Case, scorer: RowScorer, softmax: bool) -> float:
    values = await scorer.score([case.original()], case.target)
    return float(target_scores(values, softmax)[0])


def _step_values(
    case: Case, baseline: Any, rng: Random, steps: int
) -> tuple[float | None, np.ndarray | None]:
    """One baseline value per perturbation step (Quantus draws per call): a single value when
    they are all equal, else an array of per-step values."""
    values = [case.baseline(baseline, rng) for _ in range(steps)]
    if all(v == values[0] for v in values):
        return values[0], None
    return None, np.asarray(values, np.float64)


def _cumulative_rows(
    case: Case, position: np.ndarray | Ranking, counts: list[int], baseline: Any, rng: Random
) -> Iterator[Row]:
    """Rows removing the ``count`` highest-ranked features for each count, in order."""
    single, per_step = _step_values(case, baseline, rng, len(counts))
    values: float | np.ndarray | None = single
    if per_step is not None:
        if isinstance(position, Ranking):
            raise ConfigError(
                f"perturb_baseline={baseline!r} draws a value per step, which inputs of more "
                f"than {LARGE_FEATURES} features do not support: use black, white, mean or "
                "a number"
            )
        # features removed at step j keep the value drawn at step j
        edges = np.asarray(counts)
        values = per_step[
            np.minimum(np.searchsorted(edges, position, side="right"), len(counts) - 1)
        ]
    for count in counts:
        yield case.removed_first(position, count, values)


async def pixel_flipping(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """c_j = f(x with the j·k most relevant features removed), j = 1…⌈F/k⌉; score = trapz(c)."""
    step = int(params["features_in_step"])
    _check_step(case, step)
    steps = math.ceil(case.feature_count / step)
    counts = [min((j + 1) * step, case.feature_count) for j in range(steps)]
    position = await anyio.to_thread.run_sync(_cumulative_ranking, case, params, counts)
    rng = case.generator("pixel-flipping")
    rows = _cumulative_rows(case, position, counts, params["perturb_baseline"], rng)
    curve = target_scores(await scorer.score_all(rows, case.target), params["softmax"])
    return MetricResult(trapezoid(curve), curve, len(counts), case.seed)


def _cumulative_ranking(case: Case, params: Params, counts: list[int]) -> np.ndarray | Ranking:
    """The features in descending order of the prepared map: a position per feature, or for
    a large input the sets of the ``counts`` first (plans call this in a worker thread)."""
    if _bounded(case):
        return _level_ranking(case, params, counts)
    weights = case.feature_weights(case.prepared(dict(params)))
    return rank_positions(case.descending(weights))


def patch_labels(case: Case, patch_size: int) -> tuple[np.ndarray, int]:
    """Patch number of every spatial element, and how many patches (raster order).

    Compatible mode tiles the input padded as Quantus pads it (half the remainder before).
    """
    labels, count = patch_rows(case, patch_size)
    return labels(0, case.subject.spatial_shape[0]), count


def patch_rows(case: Case, patch_size: int) -> tuple[Callable[[int, int], np.ndarray], int]:
    """A function giving the patch numbers of the spatial rows ``[first, stop)`` along the
    first spatial axis, and how many patches there are."""
    shape = case.subject.spatial_shape
    if case.compatible and len(shape) != 2:
        raise InputError("region metrics in Quantus-compatible mode need a 2-D image")
    indices, tiles = [], []
    for extent in shape:
        pad = (-extent) % patch_size if case.compatible else 0
        indices.append((np.arange(extent) + pad // 2) // patch_size)
        tiles.append((extent + pad + patch_size - 1) // patch_size)
    rest = np.zeros(shape[1:], dtype=np.int64)
    for axis in range(1, len(shape)):
        view = [1] * (len(shape) - 1)
        view[axis - 1] = shape[axis]
        rest = rest * tiles[axis] + indices[axis].reshape(view)
    stride = math.prod(tiles[1:])

    def labels(first: int, stop: int) -> np.ndarray:
        rows = indices[0][first:stop].reshape(-1, *([1] * (len(shape) - 1)))
        return rows * stride + rest

    return labels, math.prod(tiles)


def _patch_sums(
    case: Case, prepared: np.ndarray, label: np.ndarray, count: int, size: int
) -> np.ndarray:
    """Σ attribution per patch; compatible mode sums the channel-broadcast map patch by patch
    in Quantus' element order, so that ties rank the same."""
    if not case.compatible:
        return np.bincount(label.ravel(), weights=prepared.ravel(), minlength=count)
    # Quantus: the map broadcast to C×H×W, zero-padded, cut into C×p×p blocks, each summed
    channels = case.subject.tensor.size // case.subject.size
    full = np.broadcast_to(prepared[None], (channels, *prepared.shape))
    pads = [(0, 0)] + [((-d) % size // 2, (-d) % size - (-d) % size // 2) for d in prepared.shape]
    padded = np.pad(full, pads)
    _, height, width = padded.shape
    blocks = padded.reshape(channels, height // size, size, width // size, size)
    grouped = blocks.transpose(1, 3, 0, 2, 4).reshape(count, -1)
    return grouped.sum(axis=-1)


def _patch_order(case: Case, sums: np.ndarray, order: str, rng: Random) -> np.ndarray:
    if order == "morf":
        return case.descending(sums) if not case.compatible else np.argsort(-sums)
    if order == "lerf":
        return case.ascending(sums) if not case.compatible else np.argsort(sums)
    if order == "random":
        return rng.permutation(sums.size)
    raise ConfigError(f"order={order!r}: use morf, lerf or random")


def _patch_positions(
    case: Case, params: Params, order: str, rng: Random
) -> tuple[np.ndarray | Ranking, int]:
    """Features in patch-removal order (a position per feature, or for a large input a
    ranking of the patches), and the number of patches."""
    patch = int(params["patch_size"])
    if patch > min(case.subject.spatial_shape):
        raise ConfigError(
            f"patch_size={patch} is larger than the input {case.subject.spatial_shape}"
        )
    if _bounded(case):
        labels, count = patch_rows(case, patch)
        sums = np.zeros(count)
        shape = case.subject.spatial_shape
        plane = case.subject.size // shape[0]
        scale = _map_scale(case, params)
        for start, stop in slab_ranges(shape):
            part = _prepared_slab(case, params, scale, start, stop)
            rows = labels(start // plane, stop // plane).reshape(-1)
            sums += np.bincount(rows, weights=part, minlength=count)
        ranked = _patch_order(case, sums, order, rng)
        return PatchRanking(rank_positions(ranked), labels, shape, patch), count
    prepared = case.prepared(dict(params))
    label, count = patch_labels(case, patch)
    ranked = _patch_order(case, _patch_sums(case, prepared, label, count, patch), order, rng)
    rank_of_patch = rank_positions(ranked)
    spatial = rank_of_patch[label]
    if case.compatible:
        tensor = case.subject.tensor
        spatial = np.broadcast_to(case.subject.expand(spatial), tensor.shape)
    return np.ascontiguousarray(spatial).reshape(-1), count


def _bounded(case: Case) -> bool:
    """Whether plans for ``case`` rank without a per-feature array (a large input)."""
    return not case.compatible and is_large(case.feature_count)


def _map_scale(case: Case, params: Params) -> float:
    """What ``Case.prepared`` divides the map by (max |a|, or 1), found slab by slab."""
    if not params.get("normalise", True):
        return 1.0
    flat = case.attribution.reshape(-1)
    top = max(float(np.max(np.abs(flat[a:b]))) for a, b in slab_ranges(flat.shape))
    return top if top > 0 else 1.0


def _prepared_slab(case: Case, params: Params, scale: float, start: int, stop: int) -> np.ndarray:
    """``Case.prepared`` over the flat range ``[start, stop)``, in float64."""
    part = case.attribution.reshape(-1)[start:stop].astype(np.float64) / scale
    return np.abs(part) if params.get("abs", False) else part


def _level_ranking(case: Case, params: Params, counts: list[int]) -> LevelRanking:
    """The ranking ``case.descending`` gives, for the counts a plan removes (large inputs)."""
    return LevelRanking(case.attribution, counts, use_abs=bool(params.get("abs", False)))


async def region_perturbation(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """d_j = f(x) − f(x without the j most relevant patches), j = 1…regions_evaluation."""
    rng = case.generator("region-perturbation")
    position, count = await anyio.to_thread.run_sync(
        _patch_positions, case, params, str(params["order"]).lower(), rng
    )
    regions = min(int(params["regions_evaluation"]), count)
    f_x = await _f_x(case, scorer, params["softmax"])
    rows = _cumulative_rows(
        case, position, list(range(1, regions + 1)), params["perturb_baseline"], rng
    )
    curve = f_x - target_scores(await scorer.score_all(rows, case.target), params["softmax"])
    return MetricResult(trapezoid(curve), curve, regions + 1, case.seed)


async def selectivity(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """c_j = f(x without the j most relevant patches), j = 1…all patches."""
    rng = case.generator("selectivity")
    position, count = await anyio.to_thread.run_sync(_patch_positions, case, params, "morf", rng)
    rows = _cumulative_rows(
        case, position, list(range(1, count + 1)), params["perturb_baseline"], rng
    )
    curve = target_scores(await scorer.score_all(rows, case.target), params["softmax"])
    return MetricResult(trapezoid(curve), curve, count, case.seed)


async def faithfulness_correlation(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Pearson(Σ_S a, f(x) − f(x without S)) over ``nr_runs`` random subsets S."""
    size = int(params["subset_size"])
    _check_step(case, size, "subset_size")
    runs = int(params["nr_runs"])
    weights = case.feature_weights(case.prepared(dict(params)))
    rng = case.generator("faithfulness-correlation")
    subsets: list[np.ndarray] = []

    def rows() -> Iterator[Row]:
        for _ in range(runs):
            chosen = rng.choice(case.feature_count, size, replace=False)
            subsets.append(chosen)
            yield case.removed_set(chosen, case.baseline(params["perturb_baseline"], rng))

    f_x = await _f_x(case, scorer, params["softmax"])
    scores = target_scores(await scorer.score_all(rows(), case.target), params["softmax"])
    sums = np.array([weights[s].sum() for s in subsets])
    return MetricResult(pearson(sums, f_x - scores), None, runs + 1, case.seed)


async def faithfulness_estimate(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Pearson(Σ_G a, f(x) − f(x without G)) over the groups G of k features in rank order."""
    step = int(params["features_in_step"])
    _check_step(case, step)
    rng = case.generator("faithfulness-estimate")
    baseline = params["perturb_baseline"]
    if _bounded(case):
        return await _faithfulness_estimate_bounded(case, params, scorer, step, rng)
    weights = case.feature_weights(case.prepared(dict(params)))
    order = case.descending(weights)
    groups = [order[i : i + step] for i in range(0, order.size, step)]
    f_x = await _f_x(case, scorer, params["softmax"])
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
    ranking = await anyio.to_thread.run_sync(_level_ranking, case, params, counts)
    bounds = list(zip([0, *counts[:-1]], counts))
    baseline = params["perturb_baseline"]
    f_x = await _f_x(case, scorer, params["softmax"])
    rows = (
        case.removed_band(ranking, low, high, case.baseline(baseline, rng)) for low, high in bounds
    )
    scores = target_scores(await scorer.score_all(rows, case.target), params["softmax"])
    sums = ranking.band_sums(counts) / _map_scale(case, params)
    return MetricResult(pearson(sums, f_x - scores), None, len(bounds) + 1, case.seed)


async def monotonicity_correlation(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Spearman(Σ_G a, v_G): v_G the mean squared change of f when the group G of k features
    (ascending relevance, one at a time) takes ``nr_samples`` baseline draws, over f(x)²."""
    step = int(params["features_in_step"])
    _check_step(case, step)
    samples = int(params["nr_samples"])
    softmax = params["softmax"]
    weights = case.feature_weights(case.prepared(dict(params)))
    order = case.ascending(weights)
    groups = [order[i : i + step] for i in range(0, order.size, step)]
    rng = case.generator("monotonicity-correlation")
    baseline = params["perturb_baseline"]
    f_x = await _f_x(case, scorer, softmax)
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
) -> MetricSpec:
    return MetricSpec(name, quantus, "queries", higher, defaults, compute, curve)


_BASE = {"abs": False, "normalise": True, "perturb_baseline": "black"}

SPECS = [
    _spec(
        "pixel-flipping",
        "PixelFlipping",
        pixel_flipping,
        False,
        {**_BASE, "features_in_step": 1, "softmax": True},
        curve=True,
    ),
    _spec(
        "region-perturbation",
        "RegionPerturbation",
        region_perturbation,
        True,
        {**_BASE, "patch_size": 8, "order": "morf", "regions_evaluation": 100, "softmax": True},
        curve=True,
    ),
    _spec(
        "selectivity",
        "Selectivity",
        selectivity,
        False,
        {**_BASE, "patch_size": 8, "softmax": True},
        curve=True,
    ),
    _spec(
        "faithfulness-correlation",
        "FaithfulnessCorrelation",
        faithfulness_correlation,
        True,
        {**_BASE, "nr_runs": 100, "subset_size": 224, "softmax": False},
    ),
    _spec(
        "faithfulness-estimate",
        "FaithfulnessEstimate",
        faithfulness_estimate,
        True,
        {**_BASE, "features_in_step": 1, "softmax": False},
    ),
    _spec(
        "monotonicity-correlation",
        "MonotonicityCorrelation",
        monotonicity_correlation,
        True,
        {
            **_BASE,
            "abs": True,
            "perturb_baseline": "uniform",
            "features_in_step": 1,
            "nr_samples": 100,
            "eps": 1e-5,
            "softmax": True,
        },
    ),
]


async def sensitivity_n(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Per input: Δ_j = f(x) − f(x minus the first j groups of k) and s_j = Σ a of group j;
    the score (across inputs) is the mean over j of Pearson(Δ_j, s_j) over the inputs."""
    step = int(params["features_in_step"])
    _check_step(case, step)
    weights = case.feature_weights(case.prepared(dict(params)))
    order = case.descending(weights)
    position = rank_positions(order)
    steps = min(math.ceil(case.feature_count / step), _sensitivity_steps(case, params))
    counts = [min((j + 1) * step, case.feature_count) for j in range(steps)]
    rng = case.generator("sensitivity-n")
    f_x = await _f_x(case, scorer, params["softmax"])
    rows = _cumulative_rows(case, position, counts, params["perturb_baseline"], rng)
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


SPECS.append(
    MetricSpec(
        "sensitivity-n",
        "SensitivityN",
        "queries",
        True,
        {**_BASE, "features_in_step": 1, "n_max_percentage": 0.8, "softmax": True},
        sensitivity_n,
        across_inputs=sensitivity_n_across,
    )
)
