"""``evaluate`` for detection runs: each stored target scored against its own box and its own
D-RISE similarity, through a real ONNX detector, checked against a numpy reference."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from rex_stream import (
    DetectionSettings,
    ExplainConfig,
    InputError,
    evaluate_detections_sync,
    explain_detections_sync,
)
from rex_stream.detection import DetectionRule
from rex_stream.errors import ConfigError
from rex_stream.evaluation.detection import box_mask
from tests.detection.planted import numpy_detections, planted_photo, planted_tensor, save_detector

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = [(2, 3, 0), (5, 6, 2)]
METRICS = "energy-in-box,pointing-game,insertion:step_fraction=0.1,deletion:step_fraction=0.1"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A photo (model-sized, so the tensor is the pixels / 255), a YOLOv8 detector and a store
    of both detections explained."""
    folder = tmp_path_factory.mktemp("evaluate")
    planted_photo(folder / "scene.png", OBJECTS, scale=(1, 1))
    save_detector(folder / "yolov8.onnx", "yolov8")
    config = ExplainConfig().with_overrides(iters=6, seed=2, min_box_size=2)
    settings = DetectionSettings("yolov8", all_detections=True)
    result = explain_detections_sync(
        str(folder / "scene.png"), str(folder / "yolov8.onnx"), config, settings,
        store=str(folder / "runs.zarr"),
    )  # fmt: skip
    assert len(result.explained) == 2
    return folder


def _evaluate(folder: Path, store: Path | str, metrics: str = METRICS, **kw: object):  # type: ignore[no-untyped-def]
    return evaluate_detections_sync(
        str(folder / "scene.png"), str(folder / "yolov8.onnx"), {"rex": str(store)}, metrics, **kw
    )


def test_every_target_is_scored_against_its_own_box_and_similarity(runs: Path) -> None:
    result = _evaluate(runs, runs / "runs.zarr")
    assert [t.group for t in result.targets] == ["scene__detection-0", "scene__detection-1"]
    store = zarr.open_group(str(runs / "runs.zarr"), mode="r")
    for target in result.targets:
        group = store[target.group]
        box = tuple(group.attrs["target_box"])
        assert target.box == box and target.label == group.attrs["target_class"]
        # energy in the box, computed here from the stored map
        a = np.asarray(group["responsibility"][...], np.float64)
        inside = box_mask(box, a.shape)
        assert inside.sum() == 64  # one 8 × 8 cell
        energy = target.results["energy-in-box"].score
        assert energy == pytest.approx(a[inside].sum() / a.sum())
        assert energy > 10 * inside.mean()  # far above a map spread evenly
        assert target.results["pointing-game"].score == 1.0
        # the unmodified input shows the target: its similarity is the detection's score
        assert target.similarity == pytest.approx(target.score, abs=1e-5)
        deletion = target.results["deletion:step_fraction=0.1"]
        insertion = target.results["insertion:step_fraction=0.1"]
        assert deletion.curve[0] == pytest.approx(target.similarity)  # nothing removed
        # all black: only YOLO's weakest proposals (sigmoid(-6) ≈ 0.0025) remain
        assert deletion.curve[-1] < 0.003 and insertion.curve[0] < 0.003
        assert insertion.curve[-1] == pytest.approx(target.similarity)
        assert insertion.score > deletion.score


def test_curves_equal_a_numpy_reference_and_a_bad_map_scores_worse(
    runs: Path, tmp_path: Path
) -> None:
    """Rewrite one group's map (no ties: an exact ranking) into a copy of the store; the
    deletion curve must equal the numpy detector's similarity of the same masked inputs, and a
    map that points away from the object must lose on every metric."""
    copy = tmp_path / "copy.zarr"
    shutil.copytree(runs / "runs.zarr", copy)
    group = zarr.open_group(str(copy), mode="a")["scene__detection-0"]
    box = tuple(int(v) for v in group.attrs["target_box"])
    rule = DetectionRule(target_box=box, target_class=int(group.attrs["target_class"]))
    rng = np.random.default_rng(5)
    away = rng.random((64, 64))
    away[box_mask(box, (64, 64))] = 0.0  # every pixel of the object ranked last
    away += np.arange(64 * 64).reshape(64, 64) * 1e-9  # unique values
    group["responsibility"][...] = away.astype(np.float32)
    bad = _evaluate(runs, f"{copy}/scene__detection-0")
    good = _evaluate(runs, f"{runs / 'runs.zarr'}/scene__detection-0")
    (b,), (g,) = bad.targets, good.targets
    assert b.results["energy-in-box"].score < 0.01 < g.results["energy-in-box"].score
    assert b.results["pointing-game"].score == 0.0
    assert (
        b.results["deletion:step_fraction=0.1"].score
        > g.results["deletion:step_fraction=0.1"].score
    )
    assert (
        b.results["insertion:step_fraction=0.1"].score
        < g.results["insertion:step_fraction=0.1"].score
    )
    # the reference: remove the n highest pixels (black), detect in numpy, take the similarity
    x = planted_tensor(OBJECTS)
    order = np.argsort(-np.asarray(group["responsibility"][...], np.float64).reshape(-1))
    counts = [*range(0, 4096, 410), 4096]
    rows = []
    for n in counts:
        masked = x.copy().reshape(3, -1)
        masked[:, order[:n]] = 0.0
        rows.append(masked.reshape(3, 64, 64))
    expected = rule.similarity(numpy_detections(np.stack(rows)).astype(np.float64))
    curve = b.results["deletion:step_fraction=0.1"].curve
    # the numpy detector drops proposals under 0.25 that the raw YOLOv8 layout keeps (≥ 0.001)
    np.testing.assert_allclose(curve, expected, atol=3e-3)
    assert expected[0] > 0.9 and expected[-1] == 0.0  # the reference itself is not trivial


def test_wrong_layout_other_model_and_missing_runs_are_refused(runs: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="stored runs read the detector as yolov8"):
        _evaluate(runs, runs / "runs.zarr", "energy-in-box", layout="end2end")
    with pytest.raises(ConfigError, match="max-sensitivity does not apply to a detection"):
        _evaluate(runs, runs / "runs.zarr", "max-sensitivity")
    other = tmp_path / "other.png"
    planted_photo(other, OBJECTS)
    with pytest.raises(InputError, match="holds no detection of 'other'"):
        evaluate_detections_sync(
            str(other), str(runs / "yolov8.onnx"), str(runs / "runs.zarr"), "energy-in-box"
        )
    # the same file under another name is the same model; another model is refused
    renamed = tmp_path / "renamed.onnx"
    renamed.write_bytes((runs / "yolov8.onnx").read_bytes())
    store = str(runs / "runs.zarr")
    evaluate_detections_sync(str(runs / "scene.png"), str(renamed), store, "energy-in-box")
    other_model = save_detector(tmp_path / "other.onnx", "yolov8", float_outputs=True)
    assert other_model.read_bytes() != renamed.read_bytes()
    with pytest.raises(InputError, match="explained with another model"):
        evaluate_detections_sync(str(runs / "scene.png"), str(other_model), store, "energy-in-box")
    evaluate_detections_sync(
        str(runs / "scene.png"), str(other_model), store, "energy-in-box", allow_mismatch=True
    )


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "rex_stream.cli", "evaluate", *args],
        capture_output=True, text=True, timeout=300, cwd=cwd, env=env,
    )  # fmt: skip


def test_cli_json_and_one_line_errors(runs: Path) -> None:
    common = ["scene.png", "--model", "yolov8.onnx", "--detections", "yolov8"]
    done = _cli(*common, "--attribution", "rex=runs.zarr", "--metrics", METRICS, "--json", cwd=runs)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["detection_format"] == "yolov8"
    assert [t["group"] for t in summary["targets"]] == ["scene__detection-0", "scene__detection-1"]
    first = summary["targets"][0]
    assert first["metrics"]["pointing-game"]["score"] == 1.0
    assert len(first["metrics"]["deletion:step_fraction=0.1"]["curve"]) == 11
    assert summary["queries"] > 0 and summary["calls"] > 0
    for extra, message in (
        (["--mask", "scene.png"], "--mask with --detections: each target's box is its mask"),
        (["--detections", "end2end"], "the stored runs read the detector as yolov8"),
    ):
        done = _cli(
            *common, "--attribution", "runs.zarr", "--metrics", "energy-in-box", *extra, cwd=runs
        )
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert lines == [f"rex-stream: error: {lines[-1].split('error: ', 1)[1]}"]
        assert message in lines[0]
