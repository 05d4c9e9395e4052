"""Boxes of detections: corner form, intersection over union, non-maximum suppression.

A detection row is ``x0, y0, x1, y1, score, class`` (:data:`COLUMNS`), in the model's input
pixels; a batch of answers is ``(n, K, 6)`` with rows of score 0 as padding.
"""

from __future__ import annotations

import numpy as np

#: the columns of a detection row
COLUMNS = ("x0", "y0", "x1", "y1", "score", "class")
SCORE, CLASS = 4, 5


def corners(centred: np.ndarray) -> np.ndarray:
    """``cx, cy, w, h`` boxes (last axis) as ``x0, y0, x1, y1``."""
    centre, size = centred[..., :2], centred[..., 2:4] / 2
    return np.concatenate([centre - size, centre + size], axis=-1)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box ``(4,)`` with every box of ``boxes`` ``(..., 4)``."""
    box = np.asarray(box, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64)
    width = np.clip(np.minimum(box[2], boxes[..., 2]) - np.maximum(box[0], boxes[..., 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[..., 3]) - np.maximum(box[1], boxes[..., 1]), 0, None)
    inter = width * height
    area = max(0.0, float(box[2] - box[0])) * max(0.0, float(box[3] - box[1]))
    areas = np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(
        boxes[..., 3] - boxes[..., 1], 0, None
    )
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def pairwise_iou(boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of every pair of boxes ``(D, 4)``: ``(D, D)``."""
    boxes = np.asarray(boxes, dtype=np.float64)
    low = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    high = np.minimum(boxes[:, None, 2:4], boxes[None, :, 2:4])
    inter = np.prod(np.clip(high - low, 0, None), axis=-1)
    areas = np.prod(np.clip(boxes[:, 2:4] - boxes[:, :2], 0, None), axis=-1)
    union = areas[:, None] + areas[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def suppress(rows: np.ndarray, overlap: float, limit: int) -> np.ndarray:
    """Class-aware greedy non-maximum suppression of detection rows ``(D, 6)``: the kept
    rows, highest score first (ties in row order), at most ``limit``."""
    order = np.argsort(-rows[:, SCORE], kind="stable")
    rows = rows[order]
    if len(rows) < 2:
        return rows[:limit]
    # one vectorised overlap matrix; the greedy pass then only reads booleans
    covers = (pairwise_iou(rows[:, :4]) > overlap) & (rows[:, None, CLASS] == rows[None, :, CLASS])
    kept: list[int] = []
    alive = np.ones(len(rows), dtype=bool)
    for i in range(len(rows)):
        if not alive[i]:
            continue
        kept.append(i)
        if len(kept) == limit:
            break
        alive &= ~covers[i]
    return rows[kept]
