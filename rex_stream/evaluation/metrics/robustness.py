"""Robustness metrics: how much the explanation changes when the input barely does.

Max- and avg-sensitivity (Yeh et al. 2019, Quantus 0.6.0's ``MaxSensitivity`` and
``AvgSensitivity``): ``nr_samples`` copies of the input with uniform noise in
``[-lower_bound, lower_bound]`` on every element are re-explained by the run's explainer
(``--explainer``), and each copy scores ‖a − a′‖ / ‖a‖; the metric is their nanmax or
nanmean. The noisy copies are drawn in order from the case's generator (under Quantus' conventions
numpy's legacy generator seeded as ``np.random.seed(seed)``, as Quantus draws them), then all
re-explanations run concurrently, so a ReX explainer's searches share the scheduler's batches.
Both metrics draw the same copies, so asking for both re-explains them once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np

from rex_stream.errors import ConfigError, InputError
from rex_stream.evaluation.case import Case, Row
from rex_stream.evaluation.conventions import Conventions
from rex_stream.evaluation.explainers import BoundExplainer
from rex_stream.evaluation.metric import MetricResult, MetricSpec, Params
from rex_stream.evaluation.scoring import TOP, RowScorer

#: Re-explanations of one metric in flight at once (each holds its noisy copy of the input).
IN_FLIGHT = 64

NORMS: dict[str, Callable[[np.ndarray], float]] = {
    "fro_norm": lambda v: float(np.linalg.norm(v)),
    "l2_norm": lambda v: float(np.linalg.norm(v)),
    "linf_norm": lambda v: float(np.linalg.norm(v, ord=np.inf)),
}
SIMILARITIES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "difference": lambda a, b: a - b,
    "abs_difference": lambda a, b: np.abs(a - b),
}


def require_explainer(case: Case, metric: str) -> BoundExplainer:
    """The case's explainer, or a one-line error saying how to give one."""
    if case.explainer is None:
        raise ConfigError(
            f"{metric} re-explains perturbed inputs: pass --explainer rex[:iters=N] or "
            "--explainer python:module:function (evaluate(..., explainer=...))"
        )
    return case.explainer


def prepare_map(found: np.ndarray, params: Params, conventions: Conventions) -> np.ndarray:
    """A map as the metric sees it: normalised by max |a|, then abs (Quantus' order)."""
    a = np.array(found, dtype=np.float64 if conventions.float64_maps else None, copy=True)
    if params.get("normalise", False) and not np.all(a == 0.0):
        a = a / np.max(np.abs(a))
    if params.get("abs", False):
        a = np.abs(a)
    return a


def checked_map(found: np.ndarray, case: Case, name: str) -> np.ndarray:
    """The explainer's map over the case's spatial axes, or a one-line error."""
    shape = case.subject.spatial_shape
    if found.size != int(np.prod(shape)) or found.squeeze().shape != tuple(
        s for s in shape if s != 1
    ):
        raise InputError(
            f"explainer {name} returned a map of shape {found.shape}; the input's spatial "
            f"shape is {shape}"
        )
    return found.reshape(shape)


def _choice(table: dict[str, Any], params: Params, key: str, metric: str) -> Any:
    name = str(params[key])
    if name not in table:
        raise ConfigError(f"metric {metric}: {key}={name!r}; choose one of {', '.join(table)}")
    return table[name]


def _noise_bounds(params: Params, metric: str) -> tuple[float, float]:
    lower = float(params["lower_bound"])
    upper = params["upper_bound"]
    if upper is None or str(upper).strip().lower() in ("", "none"):
        return -lower, lower
    try:
        high = float(upper)
    except ValueError:
        raise ConfigError(f"metric {metric}: upper_bound={upper!r} must be a number") from None
    if high <= lower:
        raise ConfigError(f"metric {metric}: upper_bound={high} must exceed lower_bound={lower}")
    return lower, high


async def sensitivities(case: Case, params: Params, scorer: RowScorer, metric: str) -> MetricResult:
    """‖a − a′‖ / ‖a‖ for every noisy copy (NaN where the prediction changed, if asked);
    ``score`` is left for the caller to reduce."""
    explainer = require_explainer(case, metric)
    numerator = _choice(NORMS, params, "norm_numerator", metric)
    denominator_norm = _choice(NORMS, params, "norm_denominator", metric)
    similarity = _choice(SIMILARITIES, params, "similarity_func", metric)
    low, high = _noise_bounds(params, metric)
    samples = int(params["nr_samples"])
    a = prepare_map(case.attribution, params, case.conventions).reshape(-1)
    denominator = denominator_norm(a)
    x = case.subject.tensor
    rng = case.generator("sensitivity")  # shared by max- and avg-sensitivity
    values = np.full(samples, np.nan)
    spent = [0]
    changed = np.zeros(samples, dtype=bool)
    check = bool(params["return_nan_when_prediction_changes"])
    top_x = 0.0
    if check:
        top_x = float((await scorer.score([case.original()], case.target))[0, TOP])
        spent[0] += 1
    room = anyio.Semaphore(IN_FLIGHT)

    async def one(step: int, noisy: np.ndarray) -> None:
        try:
            if check:
                row = _tensor_row(case, noisy)
                top = float((await scorer.score([row], case.target))[0, TOP])
                changed[step] = top != top_x
                spent[0] += 1
            found, queries = await explainer.explain(noisy, case.target)
            spent[0] += queries
            b = prepare_map(checked_map(found, case, explainer.name), params, case.conventions)
            values[step] = numerator(similarity(a, b.reshape(-1))) / denominator
        finally:
            room.release()

    async with anyio.create_task_group() as group:
        for step in range(samples):
            await room.acquire()
            noise = rng.uniform(low=low, high=high, size=x.size).reshape(x.shape)
            # as Quantus: the float64 sum written back into the input's dtype
            noisy = (x.astype(np.float64) + noise).astype(x.dtype)
            group.start_soon(one, step, noisy)
    values[changed] = np.nan
    return MetricResult(float("nan"), values, spent[0], case.seed)


def _tensor_row(case: Case, tensor: np.ndarray) -> Row:
    digest = hashlib.blake2b(np.ascontiguousarray(tensor).tobytes(), digest_size=16).digest()
    return Row((case.input_key, "tensor", digest), lambda out: np.copyto(out, tensor))


async def max_sensitivity(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """The largest relative change of the map under noise (nanmax; max if NaN is asked)."""
    result = await sensitivities(case, params, scorer, "max-sensitivity")
    assert result.curve is not None
    with np.errstate(invalid="ignore"):
        strict = bool(params["return_nan_when_prediction_changes"])
        score = np.max(result.curve) if strict else _nan_reduce(np.nanmax, result.curve)
    return MetricResult(float(score), result.curve, result.queries, result.seed)


async def avg_sensitivity(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """The mean relative change of the map under noise (nanmean; mean if NaN is asked)."""
    result = await sensitivities(case, params, scorer, "avg-sensitivity")
    assert result.curve is not None
    strict = bool(params["return_nan_when_prediction_changes"])
    score = np.mean(result.curve) if strict else _nan_reduce(np.nanmean, result.curve)
    return MetricResult(float(score), result.curve, result.queries, result.seed)


def _nan_reduce(reduce: Callable[[np.ndarray], Any], values: np.ndarray) -> float:
    if np.all(np.isnan(values)):
        return float("nan")
    return float(reduce(values))


DEFAULTS: dict[str, Any] = {
    "nr_samples": 200,
    "lower_bound": 0.2,
    "upper_bound": None,
    "norm_numerator": "fro_norm",
    "norm_denominator": "fro_norm",
    "similarity_func": "difference",
    "return_nan_when_prediction_changes": False,
    "abs": False,
    "normalise": False,
}

SPECS = [
    MetricSpec("max-sensitivity", "MaxSensitivity", "explainer", False, DEFAULTS, max_sensitivity),
    MetricSpec("avg-sensitivity", "AvgSensitivity", "explainer", False, DEFAULTS, avg_sensitivity),
]
