"""What a detection target's metrics see: the target's box as the ground-truth mask, the
similarity to the target as the model's score, and the metrics that make sense for it.

Every query metric reads its rows' scores through a :class:`~rex_stream.evaluation.scoring.
RowScorer`; here its kept columns are D-RISE's similarity (as both "logit" and
"probability", so ``softmax`` changes nothing) and whether the row still passes the
detection rule (as "top class").
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rex_stream.detection import DetectionRule
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.metric import MetricResult, MetricSpec, Params
from rex_stream.evaluation.metrics.registry import METRICS
from rex_stream.evaluation.scoring import COLUMNS, LOGIT, PROBABILITY, TOP, RowScorer

Corners = tuple[float, float, float, float]


def box_mask(box: Corners, shape: tuple[int, ...]) -> np.ndarray:
    """The pixels of ``box`` (model pixels, x0 y0 x1 y1) as a bool mask of ``(H, W)``: every
    pixel the box touches, as the share inside the box is counted when explaining."""
    rows, cols = shape[-2:]
    mask = np.zeros((rows, cols), dtype=bool)
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(cols, int(np.ceil(box[2]))), min(rows, int(np.ceil(box[3])))
    mask[y0:y1, x0:x1] = True
    return mask


def similarity_columns(rule: DetectionRule) -> Callable[[np.ndarray, int], np.ndarray]:
    """A scorer's columns for detection answers ``(n, K, 6)`` under ``rule``."""

    def columns(raw: np.ndarray, target: int) -> np.ndarray:
        answers = np.asarray(raw, dtype=np.float64)
        values = np.empty((answers.shape[0], COLUMNS), dtype=np.float64)
        values[:, LOGIT] = values[:, PROBABILITY] = rule.similarity(answers)
        values[:, TOP] = rule.passing(answers)
        return values

    return columns


async def energy_in_box(case: Case, params: Params, scorer: RowScorer) -> MetricResult:
    """The share of the map's positive energy inside the box (Score-CAM's energy-based
    pointing game): Σ_box max(a, 0) / Σ max(a, 0); NaN for a map with no positive part."""
    if case.mask is None:
        return MetricResult(float("nan"), seed=case.seed)
    positive = np.clip(case.prepared(dict(params)), 0.0, None)
    total = float(positive.sum())
    inside = float(positive[case.mask].sum())
    return MetricResult(inside / total if total > 0 else float("nan"), seed=case.seed)


ENERGY_IN_BOX = MetricSpec(
    "energy-in-box", "(rex-stream)", "mask", True, {"abs": False, "normalise": True}, energy_in_box
)


def _fits(spec: MetricSpec) -> bool:
    """Metrics of one map against a mask or against the model's scores of rows built from the
    input (not re-explanations, not metrics over a set of inputs)."""
    return spec.needs in ("map", "mask", "queries") and spec.across_inputs is None


#: The metrics ``rex-stream evaluate --detections`` takes.
DETECTION_METRICS: dict[str, MetricSpec] = {
    **{name: spec for name, spec in METRICS.items() if _fits(spec)},
    ENERGY_IN_BOX.name: ENERGY_IN_BOX,
}
