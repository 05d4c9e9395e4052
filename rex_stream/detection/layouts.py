"""The output layouts detector servers give, each read into rows of ``x0, y0, x1, y1, score,
class`` per image (N: batch, A: anchors, C: classes, K: most detections, D: detections found).

| layout | outputs |
|---|---|
| ``yolov5`` | one (N, A, 5 + C): cx, cy, w, h, objectness, class scores |
| ``yolov8`` | one (N, 4 + C, A): cx, cy, w, h, class scores (no objectness, transposed) |
| ``end2end`` | one (N, K, 6): x0, y0, x1, y1, score, class, padded (NMS-free exports) |
| ``efficient-nms`` | ``num_detections`` (N, 1), ``detection_boxes`` (N, K, 4),
  ``detection_scores`` (N, K), ``detection_classes`` (N, K), padded after the count |
| ``torchvision`` | ``boxes`` (D, 4), ``labels`` (D), ``scores`` (D): one image per call |
| ``boxes`` | one (N, K, 6) like ``end2end``, score 0 as padding (a ``python:`` callable's) |

Raw YOLO outputs are one proposal per anchor: those scoring at least :data:`MIN_SCORE` go
through class-aware non-maximum suppression (IoU > :data:`NMS_IOU`), as the exporters' own
post-processing does. A model whose outputs do not fit its layout is a one-line
:class:`~rex_stream.errors.InputError` naming the outputs expected and those found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rex_stream.detection.boxes import SCORE, corners, suppress
from rex_stream.engine.backend import Outputs
from rex_stream.errors import ConfigError, InputError

#: proposals of raw layouts below this score are dropped before suppression
MIN_SCORE = 1e-3
#: suppression overlap of raw layouts (YOLOv5's default)
NMS_IOU = 0.45
#: the most proposals of one image that go through suppression (the highest scoring)
MAX_CANDIDATES = 1000

Decode = Callable[[Outputs, int, int], list[np.ndarray]]


@dataclass(frozen=True)
class Layout:
    """One output layout: what it expects (for messages), how it decodes, whether the model
    takes one image per call (its outputs have no batch axis), and whether its outputs are raw
    proposals (thousands per image, suppressed while decoding: worth a worker thread)."""

    name: str
    expects: str
    decode: Decode
    one_per_call: bool = False
    raw: bool = False


def _describe(outputs: Outputs) -> str:
    return ", ".join(f"{name} {tuple(a.shape)}" for name, a in outputs.items()) or "none"


def _wrong(layout: str, expects: str, outputs: Outputs, hint: str = "") -> InputError:
    return InputError(
        f"--detections {layout} expects {expects}; the model gives {_describe(outputs)}{hint}"
    )


def _single(layout: str, expects: str, outputs: Outputs, rows: int, ndim: int) -> np.ndarray:
    """The one output of a single-output layout, checked for ``ndim`` axes, batch first
    (other outputs may only be larger, such as a segmentation model's mask prototypes)."""
    arrays = [a for a in outputs.values() if a.ndim == ndim and a.shape[0] == rows]
    others_fit = all(a.ndim > ndim for a in outputs.values() if a.ndim != ndim)
    if len(arrays) != 1 or not others_fit:
        hint = ""
        if any(a.ndim == 2 for a in outputs.values()) and len(outputs) == 1:
            hint = " (class scores: is this a classification model?)"
        raise _wrong(layout, expects, outputs, hint)
    return np.asarray(arrays[0], dtype=np.float64)


def _proposals(boxes: np.ndarray, scores: np.ndarray, limit: int) -> np.ndarray:
    """Rows of one image's raw proposals: best class per anchor, floor, suppression."""
    classes = scores.argmax(axis=1)
    best = scores[np.arange(len(scores)), classes]
    keep = np.flatnonzero(best >= MIN_SCORE)
    if len(keep) > MAX_CANDIDATES:
        keep = keep[np.argsort(-best[keep], kind="stable")[:MAX_CANDIDATES]]
    rows = np.column_stack([corners(boxes[keep]), best[keep], classes[keep]])
    return suppress(rows, NMS_IOU, limit)


def decode_yolov5(outputs: Outputs, rows: int, limit: int) -> list[np.ndarray]:
    """(N, A, 5 + C): score = objectness × class score."""
    expects = "one output (N, anchors, 5 + classes): cx, cy, w, h, objectness, class scores"
    raw = _single("yolov5", expects, outputs, rows, 3)
    if raw.shape[2] < 6:
        raise _wrong("yolov5", expects, outputs)
    return [_proposals(image[:, :4], image[:, 4:5] * image[:, 5:], limit) for image in raw]


def decode_yolov8(outputs: Outputs, rows: int, limit: int) -> list[np.ndarray]:
    """(N, 4 + C, A): class scores only, anchors last."""
    expects = "one output (N, 4 + classes, anchors): cx, cy, w, h, class scores"
    raw = _single("yolov8", expects, outputs, rows, 3)
    if raw.shape[1] < 5:
        raise _wrong("yolov8", expects, outputs)
    return [_proposals(image[:4].T, image[4:].T, limit) for image in raw]


def _padded_rows(table: np.ndarray, limit: int) -> np.ndarray:
    """The rows of an (K, 6) table that are detections (score > 0), best first."""
    table = table[table[:, SCORE] > 0]
    order = np.argsort(-table[:, SCORE], kind="stable")[:limit]
    return table[order]


def decode_rows(layout: str) -> Decode:
    """(N, K, 6) rows x0, y0, x1, y1, score, class, padded with score 0."""
    expects = "one output (N, K, 6): x0, y0, x1, y1, score, class"

    def decode(outputs: Outputs, rows: int, limit: int) -> list[np.ndarray]:
        table = _single(layout, expects, outputs, rows, 3)
        if table.shape[2] != 6:
            raise _wrong(layout, expects, outputs)
        # every image at once: detections (score > 0) first, best first, ties in row order
        scores = table[..., SCORE]
        order = np.argsort(np.where(scores > 0, -scores, np.inf), axis=1, kind="stable")
        best = np.take_along_axis(table, order[..., None], axis=1)[:, :limit]
        counts = np.minimum((scores > 0).sum(axis=1), limit)
        return [image[:count] for image, count in zip(best, counts)]

    return decode


EFFICIENT_NMS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")


def decode_efficient_nms(outputs: Outputs, rows: int, limit: int) -> list[np.ndarray]:
    """TensorRT's EfficientNMS: a count, then padded boxes, scores and classes."""
    expects = (
        "outputs num_detections (N, 1), detection_boxes (N, K, 4), detection_scores (N, K), "
        "detection_classes (N, K)"
    )
    if not set(EFFICIENT_NMS) <= set(outputs):
        raise _wrong("efficient-nms", expects, outputs)
    count, boxes, scores, classes = (np.asarray(outputs[n], np.float64) for n in EFFICIENT_NMS)
    if count.size != rows or boxes.ndim != 3 or boxes.shape[0] != rows or boxes.shape[2] != 4:
        raise _wrong("efficient-nms", expects, outputs)
    counts = np.clip(count.reshape(rows), 0, boxes.shape[1]).astype(np.int64)
    scores, classes = scores.reshape(rows, -1), classes.reshape(rows, -1)
    found = []
    for i in range(rows):
        n = int(counts[i])
        table = np.column_stack([boxes[i, :n], scores[i, :n], classes[i, :n]])
        found.append(_padded_rows(table, limit))
    return found


TORCHVISION = ("boxes", "labels", "scores")


def decode_torchvision(outputs: Outputs, rows: int, limit: int) -> list[np.ndarray]:
    """torchvision's detectors: ``boxes`` (D, 4), ``labels`` (D), ``scores`` (D), D ≥ 0."""
    expects = "outputs boxes (D, 4), labels (D), scores (D) for one image per call"
    if not set(TORCHVISION) <= set(outputs) or rows != 1:
        raise _wrong("torchvision", expects, outputs)
    boxes, labels, scores = (np.asarray(outputs[n], np.float64) for n in TORCHVISION)
    if boxes.ndim == 3 and boxes.shape[0] == 1:  # a server that kept a batch axis of 1
        boxes, labels, scores = boxes[0], labels.reshape(-1), scores.reshape(-1)
    boxes = boxes.reshape(-1, 4) if boxes.size == 0 else boxes
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not len(boxes) == len(labels) == len(scores):
        raise _wrong("torchvision", expects, outputs)
    return [_padded_rows(np.column_stack([boxes, scores, labels]), limit)]


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("yolov5", "(N, A, 5 + C)", decode_yolov5, raw=True),
        Layout("yolov8", "(N, 4 + C, A)", decode_yolov8, raw=True),
        Layout("end2end", "(N, K, 6)", decode_rows("end2end")),
        Layout("efficient-nms", "num_detections + boxes/scores/classes", decode_efficient_nms),
        Layout("torchvision", "boxes, labels, scores (one image)", decode_torchvision, True),
        Layout("boxes", "(N, K, 6)", decode_rows("boxes")),
    )
}


def layout_named(name: str) -> Layout:
    """The layout called ``name``; an unknown one is a ConfigError listing the known."""
    if name not in LAYOUTS:
        raise ConfigError(
            f"--detections {name!r}: unknown layout; known: {', '.join(LAYOUTS)}",
            key="--detections",
        )
    return LAYOUTS[name]
