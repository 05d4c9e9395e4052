"""Model parameter randomisation (Quantus' MPRT and EfficientMPRT) for local ONNX models.

Both re-explain the input (with the run's explainer, for the case's target class) under
variants of the model whose layers are randomised (:mod:`rex_stream.evaluation.variants`: a
seeded PyTorch-style reset per layer), opened through a :class:`VariantPool`.

- **MPRT** (Adebayo et al. 2018; ↓): the curve is the similarity (Spearman by default) between
  the given map and the map explained under the unchanged model, then under each step of the
  cascade (``top_down``: output layer first, cumulatively; ``bottom_up``; ``independent``).
  Maps are normalised by max |a| and made absolute first (Quantus' defaults). The score is the
  last point (the fully randomised model), or the mean over the randomised steps with
  ``return_average_correlation``; ``skip_layers`` explains only the last step.
- **efficient-MPRT** (Hedström et al. 2023; ↑): (H(e_rand) − H(e)) / H(e), where e is the map
  explained under the unchanged model, e_rand under the fully randomised one, and H the
  entropy of a histogram of the map's values in ``n_bins`` equal bins. As in Quantus, the
  given map plays no part: the metric judges the explainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rex_stream.errors import ConfigError
from rex_stream.evaluation.explainers import spatial_map
from rex_stream.evaluation.metric import COMMON, MetricResult, MetricSpec, Params
from rex_stream.evaluation.metrics.statistics import pearson, spearman

if TYPE_CHECKING:
    from rex_stream.evaluation.case import Case
    from rex_stream.evaluation.scoring import RowScorer
    from rex_stream.evaluation.variants.pool import VariantPool

#: The key of the unchanged model among the variants.
ORIGINAL = ("original",)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm > 0 else float("nan")


#: ``similarity_func`` values, with Quantus' function names as aliases.
SIMILARITIES = {
    "spearman": spearman,
    "correlation_spearman": spearman,
    "pearson": pearson,
    "correlation_pearson": pearson,
    "cosine": _cosine,
}


def variants_of(case: Case, metric: str) -> VariantPool:
    """The run's pool of model variants, or a one-line error saying what is missing."""
    pool = getattr(case, "variants", None)
    if pool is None:
        raise ConfigError(
            f"{metric} needs a local ONNX model (--model model.onnx) and an explainer "
            "(--explainer rex or python:module:function) to re-explain with randomised weights"
        )
    return pool


def randomised_key(seed: int, layers: frozenset[int]) -> tuple[object, ...]:
    """The variant with ``layers`` reset (the same tensors whatever order got there)."""
    return ("randomised", seed, tuple(sorted(layers)))


async def explain_under(
    case: Case, pool: VariantPool, seed: int, layers: frozenset[int]
) -> np.ndarray:
    """The case's input re-explained under the model with ``layers`` randomised (the
    unchanged model's map comes from the run's own explainer and scheduler, if it has one)."""
    if not layers and case.explainer is not None:
        found, _ = await case.explainer.explain(case.subject.tensor, case.target)
        return spatial_map(found, case.subject)
    key = ORIGINAL if not layers else randomised_key(seed, layers)
    explained = await pool.explain(
        key,
        lambda: pool.model.randomised(layers, seed),
        case.subject.tensor,
        case.target,
        case.input_key,
    )
    return spatial_map(explained, case.subject)


def prepared(case: Case, explained: np.ndarray, params: Params) -> np.ndarray:
    """A re-explained map as the metric sees the given one (normalise, abs)."""
    return case.with_attribution(explained).prepared(dict(params))


async def _mprt(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    pool = variants_of(case, "MPRT")
    similarity = SIMILARITIES.get(str(params["similarity_func"]).lower())
    if similarity is None:
        raise ConfigError(
            f"mprt: similarity_func={params['similarity_func']!r}; use one of "
            f"{', '.join(SIMILARITIES)}"
        )
    average, last = params["return_average_correlation"], params["return_last_correlation"]
    if average and last:
        raise ConfigError(
            "mprt: return_average_correlation and return_last_correlation exclude each other"
        )
    if average and params["skip_layers"]:
        raise ConfigError("mprt: return_average_correlation needs every layer (skip_layers=false)")
    seed = int(params["seed"])
    steps = pool.model.cascade(str(params["layer_order"]), seed)
    if params["skip_layers"]:
        steps = steps[-1:]
    given = case.prepared(dict(params)).reshape(-1)
    curve = []
    for layers in [frozenset[int](), *(chosen for _, chosen in steps)]:
        explained = await explain_under(case, pool, seed, layers)
        curve.append(similarity(given, prepared(case, explained, params).reshape(-1)))
    values = np.asarray(curve, dtype=np.float64)
    score = float(np.mean(values[1:])) if average else float(values[-1])
    return MetricResult(
        score,
        curve=values,
        seed=seed,
        extras={"layers": float(len(pool.model.layers)), "original": float(values[0])},
    )


def histogram_entropy(a: np.ndarray, n_bins: int) -> float:
    """Entropy (nats) of the histogram of ``a``'s values in ``n_bins`` equal bins
    (``scipy.stats.entropy(np.histogram(a, n_bins)[0])``, Quantus' ``discrete_entropy``)."""
    counts, _ = np.histogram(np.asarray(a, np.float64).reshape(-1), bins=n_bins)
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log(p)))


async def _efficient_mprt(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    pool = variants_of(case, "efficient-MPRT")
    seed = int(params["seed"])
    n_bins = int(params["n_bins"])
    _, everything = pool.model.cascade(str(params["layer_order"]), seed)[-1]
    original = await explain_under(case, pool, seed, frozenset())
    randomised = await explain_under(case, pool, seed, everything)
    before = histogram_entropy(prepared(case, original, params), n_bins)
    after = histogram_entropy(prepared(case, randomised, params), n_bins)
    score = (after - before) / before if before > 0 else float("nan")
    return MetricResult(
        score,
        seed=seed,
        extras={"entropy_original": before, "entropy_randomised": after},
    )


SPECS = (
    MetricSpec(
        "mprt",
        "MPRT",
        "weights",
        False,
        {
            "similarity_func": "spearman",
            "layer_order": "top_down",
            "seed": 42,
            "return_average_correlation": False,
            "return_last_correlation": False,
            "skip_layers": False,
            COMMON[0]: True,
            COMMON[1]: True,
        },
        _mprt,
        curve=True,
        curve_x=lambda params, features, length: np.arange(length, dtype=np.float64),
        curve_axis="layers randomised",
    ),
    MetricSpec(
        "efficient-mprt",
        "EfficientMPRT",
        "weights",
        True,
        {
            "layer_order": "bottom_up",
            "seed": 42,
            "n_bins": 100,
            COMMON[0]: False,
            COMMON[1]: False,
        },
        _efficient_mprt,
    ),
)
