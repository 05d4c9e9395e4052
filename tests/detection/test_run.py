"""Explaining detections end to end through the library call: the explanation lands on the
object, the object alone is still detected, every detection searches through one scheduler,
and the results are identical across batch sizes, layouts and backends."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest
import zarr

from rex_stream.adapters.python import PythonBackend
from rex_stream.config import ExplainConfig
from rex_stream.detection import DetectionRule
from rex_stream.errors import InputError
from rex_stream.runs.detect import DetectionResult, DetectionSettings, explain_detections
from tests.detection.planted import (
    cell_box,
    numpy_detections,
    planted_photo,
    save_detector,
)
from tests.detection.python_detector import detect_outputs

OBJECTS = [(2, 3, 0), (5, 6, 2)]


def _config(iters: int = 6, batch: int | None = None) -> ExplainConfig:
    overrides = dict(iters=iters, seed=3, min_box_size=2)
    if batch is not None:
        overrides["max_batch"] = batch
    return ExplainConfig().with_overrides(**overrides)


def _explain(
    photo: Path | str, backend: object, settings: DetectionSettings, config: ExplainConfig, **kw
) -> DetectionResult:
    async def main() -> DetectionResult:
        return await explain_detections(str(photo), backend, config, settings, **kw)  # type: ignore[arg-type]

    return anyio.run(main)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scene")
    return planted_photo(folder / "scene.png", OBJECTS, scale=(2, 1))


def test_the_explanation_lands_on_the_object_and_alone_is_still_detected(
    scene: Path, tmp_path: Path
) -> None:
    model = save_detector(tmp_path / "yolov8.onnx", "yolov8")
    result = _explain(scene, str(model), DetectionSettings("yolov8"), _config(iters=20))
    (explained,) = result.explained
    assert explained.detection.box == tuple(float(v) for v in cell_box(2, 3))
    assert explained.photo_box == (48.0, 16.0, 64.0, 24.0)  # the photo is twice as wide
    assert explained.inside_box is not None and explained.inside_box >= 0.85
    # the object alone (its box shown, everything else masked) is still this detection
    x0, y0, x1, y1 = (int(v) for v in explained.detection.box)
    alone = np.zeros((1, 3, 64, 64), np.float32)
    tensor = explained.explanation.subject.tensor
    alone[0, :, y0:y1, x0:x1] = tensor[:, y0:y1, x0:x1]
    rule = DetectionRule(target_box=explained.detection.box, target_class=0)
    assert rule.passing(numpy_detections(alone)).tolist() == [True]


def test_results_are_identical_across_batch_sizes_layouts_and_backends(
    scene: Path, tmp_path: Path
) -> None:
    runs = {}
    for layout in ("yolov8", "efficient-nms", "torchvision"):
        model = save_detector(tmp_path / f"{layout}.onnx", layout)
        for batch in (1, 5) if layout == "yolov8" else (16,):
            runs[f"{layout}/{batch}"] = _explain(
                scene,
                str(model),
                DetectionSettings(layout, all_detections=True),
                _config(batch=batch),
            )
    python = PythonBackend(detect_outputs, (3, 64, 64))
    runs["python"] = _explain(
        scene, python, DetectionSettings("boxes", all_detections=True), _config()
    )
    reference = runs.pop("yolov8/1")
    for name, run in runs.items():
        assert [e.detection.box for e in run.explained] == [
            e.detection.box for e in reference.explained
        ], name
        for ours, theirs in zip(run.explained, reference.explained):
            np.testing.assert_array_equal(
                ours.explanation.responsibility, theirs.explanation.responsibility, err_msg=name
            )
            np.testing.assert_array_equal(ours.explanation.mask, theirs.explanation.mask)


def test_all_detections_share_the_scheduler_and_their_equal_mutants(
    scene: Path, tmp_path: Path
) -> None:
    model = str(save_detector(tmp_path / "end2end.onnx", "end2end"))
    together = _explain(scene, model, DetectionSettings("end2end", all_detections=True), _config())
    assert len(together.explained) == 2
    alone_calls = 0
    for box, shared in zip(((48, 16, 64, 24), (96, 40, 112, 48)), together.explained):
        alone = _explain(scene, model, DetectionSettings("end2end", target_box=box), _config())
        (explained,) = alone.explained
        assert explained.photo_box == box
        alone_calls += explained.explanation.stats.calls
        # a target searched beside others is explained exactly as when it is alone
        np.testing.assert_array_equal(
            shared.explanation.responsibility, explained.explanation.responsibility
        )
        np.testing.assert_array_equal(shared.explanation.mask, explained.explanation.mask)
    calls = together.explained[0].explanation.stats.calls  # the shared scheduler's
    assert calls < alone_calls


def test_a_mutant_that_several_targets_ask_for_is_sent_once(scene: Path) -> None:
    sent = [0]

    def counted(batch: np.ndarray) -> dict[str, np.ndarray]:
        sent[0] += len(batch)
        return detect_outputs(batch)

    backend = PythonBackend(counted, (3, 64, 64))
    result = _explain(scene, backend, DetectionSettings("boxes", all_detections=True), _config())
    asked = sum(e.explanation.stats.queries for e in result.explained)
    # every iteration's first level alone is the same 14 mutants for both targets
    assert sent[0] <= asked - 6 * 14
    assert sent[0] > asked / 2


def test_targets_are_stored_with_their_attributes_and_resume(scene: Path, tmp_path: Path) -> None:
    model = str(save_detector(tmp_path / "yolov5.onnx", "yolov5"))
    store = tmp_path / "runs.zarr"
    settings = DetectionSettings("yolov5", all_detections=True)
    first = _explain(scene, model, settings, _config(), store=store)
    groups = sorted(zarr.open_group(str(store), mode="r").group_keys())
    assert groups == ["scene__detection-0", "scene__detection-1"]
    node = zarr.open_group(str(store), mode="r")["scene__detection-1"]
    assert node.attrs["target_box"] == [48.0, 40.0, 56.0, 48.0]
    assert node.attrs["target_class"] == 2 and node.attrs["detection_format"] == "yolov5"
    assert node.attrs["target_score"] > 0.99
    np.testing.assert_array_equal(node["explanation"][:], first.explained[1].explanation.mask)
    again = _explain(scene, model, settings, _config(), store=store, resume=True)
    for ours, theirs in zip(again.explained, first.explained):
        assert ours.explanation.stats.resumed_iterations == 6
        np.testing.assert_array_equal(
            ours.explanation.responsibility, theirs.explanation.responsibility
        )


def test_nothing_detected_is_one_error(tmp_path: Path) -> None:
    model = str(save_detector(tmp_path / "torchvision.onnx", "torchvision"))
    empty = planted_photo(tmp_path / "empty.png", [])
    with pytest.raises(InputError, match="detects nothing"):
        _explain(empty, model, DetectionSettings("torchvision"), _config())
