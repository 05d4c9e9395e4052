"""Infidelity (Yeh et al., as Quantus 0.6.0 computes it): how far the map's linear prediction
of each perturbation's effect misses the model's.

Square patches are removed one after another in raster order (cumulatively); for each step
Δ_j = f(x) − f(x_j) and s_j = Σ a ⊙ (x − x_j); the score is mean_j (Δ_j − s_j)², averaged over
the patch sizes. Quantus repeats this ``n_perturb_samples`` times with identical perturbations:
the repeats are identical rows here, scored once, and give the same mean.
"""

from __future__ import annotations

import numpy as np

from rex_stream.errors import ConfigError
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.metric import MetricResult, MetricSpec, Params
from rex_stream.evaluation.metrics.patches import patch_labels
from rex_stream.evaluation.scoring import RowScorer, target_scores


def _sizes(text: object) -> list[int]:
    try:
        sizes = [int(part) for part in str(text).replace(";", "+").split("+") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) <= 0:
        raise ConfigError(f"infidelity: perturb_patch_sizes={text!r}: positive integers like 4+8")
    return sizes


async def infidelity(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """Mean squared gap between the model's and the map's change, over cumulative patches."""
    softmax = bool(params["softmax"])
    prepared = case.prepared(dict(params))
    rng = case.generator("infidelity")
    subject = case.subject
    f_x = float(target_scores(await scorer.score([case.original()], case.target), softmax)[0])
    losses, queries = [], 1
    for size in _sizes(params["perturb_patch_sizes"]):
        if size > min(subject.spatial_shape):
            raise ConfigError(f"infidelity: patch size {size} is larger than the input")
        labels, count = patch_labels(case, size)
        value = case.baseline(params["perturb_baseline"], rng)
        baseline = subject.baseline if value is None else value
        removed = subject.tensor - np.asarray(baseline, np.float64)
        weighted = np.asarray(subject.expand(prepared), np.float64) * removed
        per_element = np.broadcast_to(subject.expand(labels), subject.tensor.shape)
        gains = np.bincount(per_element.ravel(), weights=weighted.ravel(), minlength=count)
        linear = np.cumsum(gains)
        position = labels.reshape(-1)
        if case.conventions.element_features:
            position = np.ascontiguousarray(per_element).reshape(-1)
        rows = (case.removed_first(position, j, value) for j in range(1, count + 1))
        scores = target_scores(await scorer.score_all(rows, case.target), softmax)
        losses.append(np.mean(((f_x - scores) - linear) ** 2))
        queries += count
    return MetricResult(float(np.mean(losses)), None, queries, case.seed)


SPECS = [
    MetricSpec(
        "infidelity",
        "Infidelity",
        "queries",
        False,
        {
            "abs": False,
            "normalise": False,
            "perturb_baseline": "black",
            "perturb_patch_sizes": "4",
            "n_perturb_samples": 10,
            "softmax": False,
        },
        infidelity,
    )
]
