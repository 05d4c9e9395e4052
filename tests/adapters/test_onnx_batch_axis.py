"""ONNX models without a batch axis (torchvision's detector exports take one picture
``(3, H, W)`` and answer ``boxes (D, 4)``, ``labels (D)``, ``scores (D)``): one input per call,
sent without a batch axis, answered with a batch axis of 1 added."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest

from rex_stream.adapters.onnx import OnnxBackend
from rex_stream.adapters.onnx_inputs import has_batch_axis
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings
from rex_stream.runs.detect import DetectionSettings, explain_detections
from tests.detection.planted import cell_box, planted_photo, planted_tensor, save_detector

OBJECTS = [(2, 3, 0), (5, 6, 2)]


def test_which_inputs_have_a_batch_axis() -> None:
    assert has_batch_axis([-1, 3, 64, 64], None)
    assert has_batch_axis([1, 3, 64, 64], None)
    assert has_batch_axis([-1, 10], None)
    assert not has_batch_axis([3, 64, 64], None)  # one channels-first picture
    assert not has_batch_axis([3, -1, -1], (3, 64, 64))  # --input-shape names every axis
    assert has_batch_axis([-1, -1, -1], (64, 64))


def test_a_model_without_a_batch_axis_answers_one_input_per_call(tmp_path: Path) -> None:
    model = save_detector(tmp_path / "tv.onnx", "torchvision", batch_axis=False)
    backend = OnnxBackend(model, BackendSettings(all_outputs=True))
    assert backend.info.input_shape == (3, 64, 64)
    assert backend.info.max_batch == 1
    outputs = anyio.run(backend.infer_outputs, planted_tensor(OBJECTS)[None])
    assert {n: a.shape for n, a in outputs.items()} == {
        "boxes": (1, 2, 4),
        "labels": (1, 2),
        "scores": (1, 2),
    }
    assert sorted(map(tuple, outputs["boxes"][0].tolist())) == sorted(
        tuple(float(v) for v in cell_box(r, c)) for r, c, _ in OBJECTS
    )
    empty = anyio.run(backend.infer_outputs, np.zeros((1, 3, 64, 64), np.float32))
    assert empty["boxes"].shape == (1, 0, 4)  # D = 0
    with pytest.raises(Exception, match="one input per call"):
        anyio.run(backend.infer_outputs, np.zeros((2, 3, 64, 64), np.float32))


def test_explanations_equal_those_of_the_batched_export(tmp_path: Path) -> None:
    photo = planted_photo(tmp_path / "scene.png", OBJECTS)
    config = ExplainConfig().with_overrides(iters=3, seed=3, min_box_size=2)
    settings = DetectionSettings("torchvision", all_detections=True)
    runs = []
    for batch_axis in (True, False):
        model = save_detector(
            tmp_path / f"tv-{batch_axis}.onnx", "torchvision", batch_axis=batch_axis
        )

        async def main(model: Path = model):  # type: ignore[no-untyped-def]
            return await explain_detections(str(photo), str(model), config, settings)

        runs.append(anyio.run(main))
    batched, single = runs
    assert [e.detection for e in single.explained] == [e.detection for e in batched.explained]
    assert len(single.explained) == 2
    for ours, theirs in zip(single.explained, batched.explained):
        np.testing.assert_array_equal(
            ours.explanation.responsibility, theirs.explanation.responsibility
        )
        assert ours.inside_box is not None and ours.inside_box > 0.5  # landing: test_run
