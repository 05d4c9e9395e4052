"""When a mutant still shows the target detection, and how much (D-RISE's similarity).

A mutant *passes* when some detection of its answer has the target's class, a score of at
least ``score_threshold`` and an IoU of at least ``iou_threshold`` with the target's box. Its
*confidence* is D-RISE's similarity (Petsiuk et al., CVPR 2021), the best over its detections
of IoU × class agreement × score: detectors that report a label and a score give a one-hot
class vector, so the class agreement (the cosine of the class vectors) is 1 or 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rex_stream.config import ScoringConfig
from rex_stream.detection.boxes import CLASS, SCORE, iou
from rex_stream.engine.verdicts import CONFIDENCE_DECIMALS, Verdicts
from rex_stream.errors import BackendError, ConfigError

#: the class given to a mutant that does not show the target (no class map is built for it)
NOT_THE_TARGET = -1


@dataclass(frozen=True)
class DetectionRule(ScoringConfig):
    """The scoring settings of one detection target: :func:`~rex_stream.engine.verdicts.judge`
    hands the answer rows (``(n, K, 6)``) to :meth:`verdicts`. Stored with the run's settings,
    so a resumed run with another target, threshold or layout is refused."""

    target_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    target_class: int = 0
    score_threshold: float = 0.5
    iou_threshold: float = 0.5
    detection_format: str = "boxes"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "target_box", tuple(float(v) for v in self.target_box))
        for name in ("score_threshold", "iou_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                flag = "--score-threshold" if name == "score_threshold" else "--iou"
                raise ConfigError(f"{flag} {value}: must be in [0, 1]", key=flag)

    def similarity(self, answers: np.ndarray) -> np.ndarray:
        """D-RISE's similarity of the target to each answer ``(n, K, 6)``: ``(n,)``."""
        return self._measured(np.asarray(answers, dtype=np.float64))[0]

    def passing(self, answers: np.ndarray) -> np.ndarray:
        """Whether each answer holds a detection of the target (class, score, IoU)."""
        return self._measured(np.asarray(answers, dtype=np.float64))[1]

    def verdicts(self, scores: np.ndarray, target: int | None) -> Verdicts:
        """Verdicts for answer rows: the target class where the mutant passes (else
        :data:`NOT_THE_TARGET`), the similarity as confidence and target confidence."""
        answers = np.asarray(scores, dtype=np.float64)
        if answers.ndim != 3 or answers.shape[2] != 6:
            raise BackendError(
                f"detections of shape {answers.shape}: expected (n, K, 6) rows of "
                "x0, y0, x1, y1, score, class"
            )
        similarity, passing = self._measured(answers)
        similarity = np.round(similarity, CONFIDENCE_DECIMALS)
        classes = np.where(passing, self.target_class, NOT_THE_TARGET)
        return Verdicts(classes.astype(np.int64), similarity, similarity.copy())

    def _measured(self, answers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(similarity, passing) of each answer. Only detections of the target's class with a
        score above 0 count towards either (the others' similarity is 0), so the overlaps are
        measured for those alone."""
        count = len(answers)
        rows, columns = np.nonzero(answers[..., SCORE] > 0)
        picked = answers[rows, columns]
        ours = np.round(picked[:, CLASS]) == self.target_class
        rows, picked = rows[ours], picked[ours]
        overlaps = iou(np.asarray(self.target_box), picked[:, :4])
        similarity = np.zeros(count)
        np.maximum.at(similarity, rows, overlaps * picked[:, SCORE])
        shows = (picked[:, SCORE] >= self.score_threshold) & (overlaps >= self.iou_threshold)
        passing = np.zeros(count, dtype=bool)
        passing[rows[shows]] = True
        return similarity, passing
