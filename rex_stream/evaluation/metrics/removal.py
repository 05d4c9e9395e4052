"""What the removal metrics share: f(x), the steps' baseline values, cumulative rows, and the
rankings of a case's features (a position per feature, or for a large input a bounded one).

A *removal* metric perturbs the input as the map ranks its features and watches the model's
score (pixel-flipping, region-perturbation, selectivity, the faithfulness correlations,
sensitivity-n). Inputs above :data:`~rex_stream.evaluation.ranked.LARGE_FEATURES` features are
ranked without a per-feature array (:func:`bounded`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from rex_stream.engine.ranking import rank_positions
from rex_stream.errors import ConfigError
from rex_stream.evaluation.case import Case, Row
from rex_stream.evaluation.metric import Params
from rex_stream.evaluation.ranked import (
    LARGE_FEATURES,
    LevelRanking,
    Ranking,
    is_large,
    slab_ranges,
)
from rex_stream.evaluation.scoring import RowScorer, target_scores

#: A metric's random source (Quantus' conventions use numpy's legacy generator).
Random = np.random.Generator | np.random.RandomState

#: Parameters of every removal metric, with Quantus' defaults (its base class, its baseline).
BASE: dict[str, Any] = {"abs": False, "normalise": True, "perturb_baseline": "black"}


def check_step(case: Case, step: int, name: str = "features_in_step") -> None:
    """Refuse a step larger than the case's features."""
    if step > case.feature_count:
        raise ConfigError(f"{name}={step} is larger than the {case.feature_count} features")


async def score_of_input(case: Case, scorer: RowScorer, softmax: bool) -> float:
    """f(x): the model's score of the target on the unmodified input."""
    values = await scorer.score([case.original()], case.target)
    return float(target_scores(values, softmax)[0])


def step_values(
    case: Case, baseline: Any, rng: Random, steps: int
) -> tuple[float | None, np.ndarray | None]:
    """One baseline value per perturbation step (Quantus draws per call): a single value when
    they are all equal, else an array of per-step values."""
    values = [case.baseline(baseline, rng) for _ in range(steps)]
    if all(v == values[0] for v in values):
        return values[0], None
    return None, np.asarray(values, np.float64)


def cumulative_rows(
    case: Case, position: np.ndarray | Ranking, counts: list[int], baseline: Any, rng: Random
) -> Iterator[Row]:
    """Rows removing the ``count`` highest-ranked features for each count, in order."""
    single, per_step = step_values(case, baseline, rng, len(counts))
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


def cumulative_ranking(case: Case, params: Params, counts: list[int]) -> np.ndarray | Ranking:
    """The features in descending order of the prepared map: a position per feature, or for
    a large input the sets of the ``counts`` first (plans call this in a worker thread)."""
    if bounded(case):
        return level_ranking(case, params, counts)
    weights = case.feature_weights(case.prepared(dict(params)))
    return rank_positions(case.descending(weights))


def bounded(case: Case) -> bool:
    """Whether plans for ``case`` rank without a per-feature array (a large input)."""
    return not case.conventions.element_features and is_large(case.feature_count)


def map_scale(case: Case, params: Params) -> float:
    """What ``Case.prepared`` divides the map by (max |a|, or 1), found slab by slab."""
    if not params.get("normalise", True):
        return 1.0
    flat = case.attribution.reshape(-1)
    top = max(float(np.max(np.abs(flat[a:b]))) for a, b in slab_ranges(flat.shape))
    return top if top > 0 else 1.0


def prepared_slab(case: Case, params: Params, scale: float, start: int, stop: int) -> np.ndarray:
    """``Case.prepared`` over the flat range ``[start, stop)``, in float64."""
    part = case.attribution.reshape(-1)[start:stop].astype(np.float64) / scale
    return np.abs(part) if params.get("abs", False) else part


def level_ranking(case: Case, params: Params, counts: list[int]) -> LevelRanking:
    """The ranking ``case.descending`` gives, for the counts a plan removes (large inputs)."""
    return LevelRanking(case.attribution, counts, use_abs=bool(params.get("abs", False)))
