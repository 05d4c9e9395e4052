"""Randomisation metrics that re-explain the same model: random-logit.

Random-logit (Sixt et al. 2020, Quantus 0.6.0's ``RandomLogit``): the explainer explains the
input again for a random class other than the target, drawn as Quantus draws it
(``np.random.seed(seed)`` then ``randint(0, num_classes - 1)`` over the other classes, seed 42
by default, whatever ``--seed`` is), and the score is the SSIM of the two maps (lower is
better: a map that ignores the class is suspect). Quantus computes SSIM on the maps flattened
to 1-D (window 7); Quantus' conventions do the same, rex-stream's own compare the maps over
their spatial axes (window 7, smaller on a short axis).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from rex_stream.errors import ConfigError, InputError
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.metric import MetricResult, MetricSpec, Params
from rex_stream.evaluation.metrics.robustness import checked_map, prepare_map, require_explainer
from rex_stream.evaluation.scoring import RowScorer

#: scikit-image's SSIM constants and default (uniform) window.
K1, K2, WINDOW = 0.01, 0.03, 7


def off_class(target: int, num_classes: int, seed: int) -> int:
    """The random other class, drawn as Quantus 0.6.0 draws it for one input."""
    index = int(np.random.RandomState(seed).randint(0, num_classes - 1, 1)[0])
    return index if index < target else index + 1


def ssim(a: np.ndarray, b: np.ndarray, window: int = WINDOW) -> float:
    """Mean structural similarity of two equally shaped arrays, as scikit-image computes it
    (uniform window, sample covariance, data range = the range of both arrays together)."""
    if any(extent < window for extent in a.shape):
        raise InputError(f"SSIM needs every axis ≥ {window} elements; the maps are {a.shape}")
    values = np.concatenate([a.reshape(-1), b.reshape(-1)])
    data_range = float(np.abs(values.max() - values.min()))
    axes = tuple(range(-a.ndim, 0))

    def mean(v: np.ndarray) -> np.ndarray:
        # the windows wholly inside the array: scikit-image's filter output after its crop
        return sliding_window_view(v, (window,) * a.ndim).mean(axis=axes)

    points = window**a.ndim
    cov_norm = points / (points - 1)
    ux, uy = mean(a), mean(b)
    vx = cov_norm * (mean(a * a) - ux * ux)
    vy = cov_norm * (mean(b * b) - uy * uy)
    vxy = cov_norm * (mean(a * b) - ux * uy)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return float(s.mean(dtype=np.float64))


async def random_logit(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """SSIM between the map of the target and the map of a random other class."""
    explainer = require_explainer(case, "random-logit")
    if str(params["similarity_func"]) != "ssim":
        raise ConfigError(f"metric random-logit: similarity_func={params['similarity_func']!r}")
    classes = int(params["num_classes"])
    known = explainer.info.num_classes
    if known is not None and classes > known:
        raise ConfigError(
            f"random-logit: num_classes={classes} but the model has {known} classes; "
            f"pass random-logit:num_classes={known}"
        )
    if not 0 <= case.target < classes or classes < 2:
        raise ConfigError(
            f"random-logit: num_classes={classes} must exceed the target class {case.target}"
        )
    seed = int(params["seed"])
    other = off_class(case.target, classes, seed)
    found, queries = await explainer.explain(case.subject.tensor, other)
    a = prepare_map(case.attribution, params, case.conventions)
    b = prepare_map(checked_map(found, case, explainer.name), params, case.conventions)
    if case.conventions.flat_ssim:
        score = ssim(a.reshape(-1), b.reshape(-1))
    else:
        shown = tuple(s for s in a.shape if s > 1) or (1,)
        window = min(WINDOW, *shown)
        window -= 1 - window % 2  # odd, as scikit-image requires
        if window < 3:
            raise InputError(f"random-logit compares maps with ≥ 3 elements per axis: {a.shape}")
        score = ssim(a.reshape(shown), b.reshape(shown), window)
    return MetricResult(score, None, queries, seed, {"class": float(other)})


DEFAULTS: dict[str, Any] = {
    "num_classes": 1000,
    "seed": 42,
    "similarity_func": "ssim",
    "abs": False,
    "normalise": True,
}

SPECS = [MetricSpec("random-logit", "RandomLogit", "explainer", False, DEFAULTS, random_logit)]
