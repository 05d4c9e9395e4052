"""Each output layout read into the same detections: ONNX detectors built with planted objects
(real onnxruntime sessions), the D = 0 and padded cases, and one-line errors for models whose
outputs do not fit their layout."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest

from rex_stream.adapters.onnx import OnnxBackend
from rex_stream.adapters.python import PythonBackend
from rex_stream.detection import DetectionBackend, detections_in, layout_named
from rex_stream.detection.boxes import iou, suppress
from rex_stream.engine.backend import BackendSettings
from rex_stream.errors import ConfigError, InputError
from tests.detection.planted import (
    LAYOUT_NAMES,
    cell_box,
    numpy_detections,
    planted_tensor,
    save_classifier,
    save_detector,
)

OBJECTS = [(2, 3, 0), (5, 6, 2), (1, 1, 1)]


def _answer(model: Path, layout: str, batch: np.ndarray) -> np.ndarray:
    backend = DetectionBackend(OnnxBackend(model, BackendSettings()), layout_named(layout))
    return anyio.run(backend.infer, batch)


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_every_layout_reads_the_planted_objects(tmp_path: Path, layout: str) -> None:
    model = save_detector(tmp_path / f"{layout}.onnx", layout)
    answer = _answer(model, layout, planted_tensor(OBJECTS)[None])
    found = [d for d in detections_in(answer[0]) if d.score >= 0.5]
    boxes = {(d.box, d.label) for d in found}
    assert boxes == {(tuple(float(v) for v in cell_box(r, c)), k) for r, c, k in OBJECTS}
    assert all(d.score > 0.99 for d in found)


@pytest.mark.parametrize("layout", LAYOUT_NAMES)
def test_an_empty_picture_gives_no_detection(tmp_path: Path, layout: str) -> None:
    """D = 0 (torchvision's variable-length outputs empty, EfficientNMS's count 0, rows all
    padding): an answer of zero rows, not an error."""
    model = save_detector(tmp_path / f"{layout}.onnx", layout)
    answer = _answer(model, layout, np.zeros((1, 3, 64, 64), np.float32))
    assert answer.shape == (1, 100, 6)
    assert [d for d in detections_in(answer[0]) if d.score >= 0.5] == []


def test_padded_layouts_keep_only_the_counted_rows(tmp_path: Path) -> None:
    model = save_detector(tmp_path / "nms.onnx", "efficient-nms")
    batch = np.stack([planted_tensor(OBJECTS), planted_tensor(OBJECTS[:1])])
    answer = _answer(model, "efficient-nms", batch)
    assert [(answer[i, :, 4] > 0).sum() for i in range(2)] == [3, 1]


def test_torchvision_layout_takes_one_image_per_call(tmp_path: Path) -> None:
    model = save_detector(tmp_path / "tv.onnx", "torchvision")
    backend = DetectionBackend(OnnxBackend(model, BackendSettings()), layout_named("torchvision"))
    assert backend.info.max_batch == 1


def test_layouts_and_the_python_callable_agree(tmp_path: Path) -> None:
    batch = np.stack([planted_tensor(OBJECTS, seed=s) for s in range(4)])
    batch[1, :, :32] = 0  # two objects hidden
    python = DetectionBackend(PythonBackend(numpy_detections, (3, 64, 64)), layout_named("boxes"))
    expected = anyio.run(python.infer, batch)
    for layout in ("end2end", "efficient-nms", "yolov8", "yolov5"):
        answer = _answer(save_detector(tmp_path / f"{layout}.onnx", layout), layout, batch)
        for i in range(len(batch)):
            ours = [(d.box, d.label) for d in detections_in(answer[i]) if d.score >= 0.5]
            theirs = [(d.box, d.label) for d in detections_in(expected[i]) if d.score >= 0.5]
            assert sorted(ours) == sorted(theirs), layout


@pytest.mark.parametrize(
    ("model_layout", "asked", "says"),
    [
        ("efficient-nms", "yolov8", "the model gives num_detections (1, 1)"),
        ("yolov8", "efficient-nms", "expects outputs num_detections"),
        ("end2end", "torchvision", "expects outputs boxes (D, 4)"),
        ("yolov8", "end2end", "expects one output (N, K, 6)"),
    ],
)
def test_outputs_that_do_not_fit_the_layout_are_named(
    tmp_path: Path, model_layout: str, asked: str, says: str
) -> None:
    model = save_detector(tmp_path / "m.onnx", model_layout)
    with pytest.raises(InputError, match=f"--detections {asked}") as caught:
        _answer(model, asked, planted_tensor(OBJECTS)[None])
    assert says in str(caught.value)


def test_a_classifier_is_not_a_detector(tmp_path: Path) -> None:
    model = save_classifier(tmp_path / "classifier.onnx")
    with pytest.raises(InputError, match="classification model"):
        _answer(model, "yolov8", planted_tensor(OBJECTS)[None])


def test_an_unknown_layout_lists_the_known() -> None:
    with pytest.raises(ConfigError, match="known: yolov5, yolov8, end2end"):
        layout_named("yolov3")


def test_suppression_keeps_the_best_of_overlapping_boxes_of_one_class() -> None:
    rows = np.array(
        [
            [0, 0, 10, 10, 0.8, 1],
            [1, 1, 11, 11, 0.9, 1],  # overlaps the first (IoU 0.68): suppresses it
            [1, 1, 11, 11, 0.7, 2],  # another class: kept
            [50, 50, 60, 60, 0.6, 1],
        ],
        dtype=np.float64,
    )
    kept = suppress(rows, 0.45, 10)
    assert kept[:, 4].tolist() == [0.9, 0.7, 0.6]
    assert suppress(rows, 0.45, 2)[:, 4].tolist() == [0.9, 0.7]


def test_iou() -> None:
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]], float)
    assert iou(np.array([0, 0, 10, 10.0]), boxes).tolist() == [1.0, 50 / 150, 0.0, 0.0]
