"""``rex-stream INPUT --detections FORMAT …`` as a user runs it: the JSON summary, the picture,
one-line errors, and a run killed with SIGKILL that resumes to the uninterrupted result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image

from tests.detection.commands import ROOT, run_cli
from tests.detection.planted import planted_photo, save_classifier, save_detector
from tests.killing import kill_mid_run

OBJECTS = [(2, 3, 0), (5, 6, 2), (1, 1, 1)]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    planted_photo(folder / "scene.png", OBJECTS, scale=(2, 1))
    save_detector(folder / "yolov8.onnx", "yolov8")
    save_classifier(folder / "classifier.onnx")
    return folder


def test_all_detections_json_and_picture(scene: Path) -> None:
    done = run_cli(
        "scene.png", "--model", "yolov8.onnx", "--detections", "yolov8", "--all-detections",
        "--iters", "4", "--seed", "1", "--min-box-size", "2", "--output", "boxes.png", "--json",
        cwd=scene,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["detection_format"] == "yolov8"
    assert [d["box"] for d in summary["detections"]] == [
        [48.0, 16.0, 64.0, 24.0],
        [96.0, 40.0, 112.0, 48.0],
        [16.0, 8.0, 32.0, 16.0],
    ]
    assert [e["class"] for e in summary["explained"]] == [0, 2, 1]
    assert all(e["explanation"]["area"] > 0 for e in summary["explained"])
    with Image.open(scene / "boxes.png") as picture:
        assert picture.width > 300


def test_target_box_picks_the_overlapping_detection(scene: Path) -> None:
    done = run_cli(
        "scene.png", "--model", "yolov8.onnx", "--detections", "yolov8", "--target-box",
        "90,38,100,50", "--iters", "2", "--seed", "1", "-n", "--json", cwd=scene,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (explained,) = json.loads(done.stdout)["explained"]
    assert explained["class"] == 2 and explained["box"] == [96.0, 40.0, 112.0, 48.0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--model", "classifier.onnx", "--detections", "yolov8"], "classification model"),
        (["--model", "yolov8.onnx", "--detections", "end2end"], "expects one output (N, K, 6)"),
        (["--model", "yolov8.onnx", "--detections", "yolov8", "--score-threshold", "0.999"],
         "highest score found: class"),
        (["--model", "yolov8.onnx", "--detections", "yolov8", "--target-box", "0,50,8,60"],
         "--target-box overlaps no detection; found: class 0 (0.99"),
        (["--model", "yolov8.onnx", "--detections", "yolov8", "--target-box", "1,2,3"],
         "expected X0,Y0,X1,Y1"),
        (["--model", "yolov8.onnx", "--all-detections"], "--all-detections needs --detections"),
        (["--model", "yolov8.onnx", "--detections", "yolov8", "--iou", "2"], "--iou 2.0"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line(scene: Path, args: list[str], says: str) -> None:
    done = run_cli("scene.png", *args, "--iters", "2", cwd=scene)
    assert done.returncode != 0
    assert done.stderr.startswith("rex-stream: error:") and done.stderr.count("\n") == 1
    assert says in done.stderr


def _committed(store: Path) -> int:
    if not (store / "zarr.json").exists():
        return 0
    try:
        root = zarr.open_group(str(store), mode="r")
        total = 0
        for _, group in root.groups():
            if "ledger" in group:
                ledger = group["ledger"]
                total += sum(1 for _, r in ledger.arrays() if r.attrs.get("committed"))
        return total
    except (KeyError, ValueError, OSError, FileNotFoundError):
        return 0


def test_a_killed_run_resumes_to_the_uninterrupted_result(scene: Path, tmp_path: Path) -> None:
    command = [
        "scene.png", "--backend", "python:tests.detection.python_detector:detect_slowly",
        "--detections", "boxes", "--all-detections", "--iters", "8", "--seed", "5",
        "--min-box-size", "2", "--batch-size", "4", "--max-inflight", "1", "-n", "--json",
    ]  # fmt: skip
    reference = run_cli(*command, "--store", str(tmp_path / "whole.zarr"), cwd=scene)
    assert reference.returncode == 0, reference.stderr
    store = tmp_path / "killed.zarr"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kill_mid_run(
        [sys.executable, "-m", "rex_stream.cli", *command, "--store", str(store)],
        lambda: _committed(store), 3, "iteration", 240,
        cwd=scene, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    before = _committed(store)
    assert 3 <= before < 3 * 8
    resumed = run_cli(*command, "--store", str(store), "--resume", cwd=scene)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert sum(e["stats"]["resumed_iterations"] for e in summary["explained"]) >= before
    whole = zarr.open_group(str(tmp_path / "whole.zarr"), mode="r")
    again = zarr.open_group(str(store), mode="r")
    for name in ("scene__detection-0", "scene__detection-1", "scene__detection-2"):
        np.testing.assert_array_equal(
            again[name]["responsibility"][:], whole[name]["responsibility"][:]
        )
