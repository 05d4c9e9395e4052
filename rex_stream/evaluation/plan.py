"""How many rows each metric will ask for, known before any is sent (``--max-queries``)."""

from __future__ import annotations

import math

from rex_stream.errors import ConfigError
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.metric import MetricChoice

#: IROF's superpixels are only known after segmenting; SLIC aims at 100.
IROF_SEGMENTS = 100


def _patches(case: Case, size: int) -> int:
    return math.prod(math.ceil(extent / size) for extent in case.subject.spatial_shape)


class QueryLimit:
    """The queries planned so far, against ``--max-queries``."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.planned = 0

    def add(self, key: str, queries: int, needs: str, detail: str) -> None:
        """Add input ``key``'s ``queries``; past the limit, a ConfigError saying what ``needs``
        them and the ``detail`` of this input's plan."""
        self.planned += queries
        if self.limit is not None and self.planned > self.limit:
            raise ConfigError(
                f"{key}: {needs} {self.planned} queries so far ({detail}), "
                f"more than --max-queries {self.limit}"
            )


def planned_rows(choice: MetricChoice, case: Case) -> int:
    """Rows ``choice`` sends for ``case`` (before the cache removes repeats); f(x) included."""
    p = choice.params
    name = choice.spec.name
    if choice.spec.needs == "explainer":
        return _re_explanation_rows(choice, case)
    if choice.spec.needs == "weights":
        return _weight_rows(choice, case)
    if choice.spec.needs != "queries":
        return 0
    features = case.feature_count
    steps = math.ceil(features / int(p.get("features_in_step", 1)))
    if name == "pixel-flipping" or name == "monotonicity-arya":
        return steps
    if name == "faithfulness-estimate":
        return steps + 1
    if name == "monotonicity-correlation":
        return steps * int(p["nr_samples"]) + 1
    if name == "sensitivity-n":
        cap = int(float(p["n_max_percentage"]) * case.subject.size // int(p["features_in_step"]))
        return min(steps, cap) + 1
    if name == "faithfulness-correlation":
        return int(p["nr_runs"]) + 1
    if name == "region-perturbation":
        return min(int(p["regions_evaluation"]), _patches(case, int(p["patch_size"]))) + 1
    if name == "selectivity":
        return _patches(case, int(p["patch_size"]))
    if name == "infidelity":
        sizes = str(p["perturb_patch_sizes"]).replace(";", "+").split("+")
        return 1 + sum(_patches(case, int(s)) for s in sizes if s.strip())
    if name in ("insertion", "deletion"):
        step = max(1, math.ceil(features * float(p["step_fraction"])))
        return len(range(0, features, step)) + 1
    if name == "road":
        return len([x for x in str(p["percentages"]).replace(";", "+").split("+") if x.strip()])
    if name == "irof":
        return IROF_SEGMENTS + 1
    return 0


def re_explanations(choice: MetricChoice) -> int:
    """How many re-explanations a metric that needs an explainer asks for."""
    return int(choice.params.get("nr_samples", 1))


def _re_explanation_rows(choice: MetricChoice, case: Case) -> int:
    """An estimate: re-explanations × the explainer's queries per explanation (plus the
    noisy copies' predictions if a changed prediction makes a sample NaN)."""
    count = re_explanations(choice)
    per_explanation = (
        case.explainer.estimate_queries(case.subject.spatial_shape) if case.explainer else 0
    )
    checks = count + 1 if choice.params.get("return_nan_when_prediction_changes") else 0
    return count * per_explanation + checks


def _weight_rows(choice: MetricChoice, case: Case) -> int:
    """An estimate: explanations under changed weights (MPRT: the unchanged model and each
    cascade step; efficient-MPRT: the unchanged and the fully randomised model) × the
    explainer's queries per explanation."""
    layers = len(case.variants.model.layers) if case.variants is not None else 0
    every_step = choice.spec.name == "mprt" and not choice.params.get("skip_layers", True)
    count = layers + 1 if every_step else 2
    per_explanation = (
        case.explainer.estimate_queries(case.subject.spatial_shape) if case.explainer else 0
    )
    return count * per_explanation
