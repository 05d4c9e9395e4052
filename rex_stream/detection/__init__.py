"""Object detection as a target of the causal method: a detector's answer (in the output
layout its server gives) read as rows of boxes, one detection chosen as the target, and the
rule by which a mutant still shows it (D-RISE's similarity as the continuous confidence).

Imports only the engine and the shared vocabulary; ``runs/detect.py`` joins it with the
causal search.
"""

from __future__ import annotations

from rex_stream.detection.backend import DetectionBackend
from rex_stream.detection.boxes import COLUMNS, iou
from rex_stream.detection.layouts import LAYOUTS, Layout, layout_named
from rex_stream.detection.rule import DetectionRule
from rex_stream.detection.targets import Detection, choose_targets, detections_in

__all__ = [
    "COLUMNS",
    "LAYOUTS",
    "Detection",
    "DetectionBackend",
    "DetectionRule",
    "Layout",
    "choose_targets",
    "detections_in",
    "iou",
    "layout_named",
]
