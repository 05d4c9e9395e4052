"""The detections of an answer, and which of them become targets (``--target-box``,
``--target``, ``--all-detections``, ``--score-threshold``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rex_stream.detection.boxes import CLASS, SCORE, iou
from rex_stream.errors import InputError

Corners = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    """One detection of the unmodified input: ``index`` in the answer (best score first),
    ``box`` (x0, y0, x1, y1) in the model's input pixels, ``score`` and class ``label``."""

    index: int
    box: Corners
    score: float
    label: int

    def describe(self, scale: tuple[float, float] = (1.0, 1.0)) -> str:
        """``class 2 (0.934) at [10, 12, 40, 44]`` (the box × ``scale``: x, y)."""
        corners = ", ".join(f"{v * scale[i % 2]:.0f}" for i, v in enumerate(self.box))
        return f"class {self.label} ({self.score:.3f}) at [{corners}]"


def detections_in(answer: np.ndarray) -> list[Detection]:
    """The detections of one answer ``(K, 6)`` (rows of score > 0), best first."""
    rows = answer[answer[:, SCORE] > 0]
    rows = rows[np.argsort(-rows[:, SCORE], kind="stable")]
    return [
        Detection(
            i,
            (float(r[0]), float(r[1]), float(r[2]), float(r[3])),
            round(float(r[SCORE]), 6),
            round(float(r[CLASS])),
        )
        for i, r in enumerate(rows)
    ]


def choose_targets(
    found: Sequence[Detection],
    *,
    score_threshold: float,
    label: int | None = None,
    near: Corners | None = None,
    every: bool = False,
    scale: tuple[float, float] = (1.0, 1.0),
) -> list[Detection]:
    """The detections to explain: every one scoring at least ``score_threshold`` (``every``),
    the one overlapping ``near`` most, or the best; ``label`` keeps only that class.

    Nothing to explain is an :class:`InputError` saying what was found (boxes × ``scale``,
    the photo's pixels per model pixel along x and y).
    """
    eligible = [d for d in found if d.score >= score_threshold]
    if label is not None:
        eligible = [d for d in eligible if d.label == label]
    if not eligible:
        what = f" of class {label}" if label is not None else ""
        if not found:
            raise InputError("the model detects nothing in this input")
        best = max(found, key=lambda d: d.score)
        raise InputError(
            f"nothing{what} detected with a score of at least {score_threshold:g} (--score-"
            f"threshold); the highest score found: {best.describe(scale)}"
        )
    if every:
        return eligible
    if near is None:
        return [eligible[0]]
    overlaps = iou(np.asarray(near, dtype=np.float64), np.array([d.box for d in eligible]))
    if not (overlaps > 0).any():
        listed = "; ".join(d.describe(scale) for d in eligible[:10])
        raise InputError(f"--target-box overlaps no detection; found: {listed}")
    return [eligible[int(np.argmax(overlaps))]]
