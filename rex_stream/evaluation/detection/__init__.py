"""Evaluating explanations of detections: localisation with the target's box as the mask
(energy in the box, pointing game, …) and deletion/insertion on D-RISE's similarity, every
target of every stored detection run through one detector and one scheduler."""

from __future__ import annotations

from rex_stream.evaluation.detection.metrics import DETECTION_METRICS, box_mask
from rex_stream.evaluation.detection.run import (
    DetectionEvaluation,
    TargetScores,
    evaluate_detections,
)
from rex_stream.evaluation.detection.targets import StoredTarget, stored_targets

__all__ = [
    "DETECTION_METRICS",
    "DetectionEvaluation",
    "StoredTarget",
    "TargetScores",
    "box_mask",
    "evaluate_detections",
    "stored_targets",
]
