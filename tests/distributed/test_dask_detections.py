"""Detection on a real Dask LocalCluster of 2 worker processes: each input a task, each target's
group written by a worker, the store equal to a one-process run's, reruns resumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

pytest.importorskip("distributed", reason="needs the dask extra: pip install 'rex-stream[dask]'")

from distributed import Client

from rex_stream import ExplainConfig, explain_detections_many, explain_detections_many_sync
from rex_stream.distributed import InputSummary
from rex_stream.distributed.detect_tasks import explain_detections_on_cluster
from rex_stream.result import InputFailure
from rex_stream.runs.detect import DetectionResult, DetectionSettings
from tests.detection.planted import planted_photo, save_detector
from tests.distributed.clusters import two_workers

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ExplainConfig().with_overrides(iters=3, seed=4, min_box_size=2)
EVERY = DetectionSettings(layout="yolov8", all_detections=True)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with two_workers() as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dask-detect")
    save_detector(root / "yolov8.onnx", "yolov8")
    photos = root / "photos"
    photos.mkdir()
    planted_photo(photos / "two.png", [(2, 3, 0), (5, 6, 2)])
    planted_photo(photos / "one.png", [(1, 1, 1)], seed=3)
    planted_photo(photos / "empty.png", [], seed=5)
    return root


def _photos(folder: Path) -> list[Path]:
    return [folder / "photos" / name for name in ("two.png", "one.png", "empty.png")]


def assert_same_targets(expected: Path, actual: Path) -> None:
    """Same target groups; bit-identical responsibility and explanation; same target attrs."""
    want, got = zarr.open_group(str(expected), mode="r"), zarr.open_group(str(actual), mode="r")
    keys = sorted(want.group_keys())
    assert keys == sorted(got.group_keys())
    assert keys == ["one__detection-0", "two__detection-0", "two__detection-1"]
    for key in keys:
        for name in ("responsibility", "explanation"):
            a, b = want[key][name], got[key][name]
            assert a.dtype == b.dtype, (key, name)
            assert np.array_equal(np.asarray(a[:]), np.asarray(b[:])), (key, name)
        for attr in ("target_box", "target_class", "target_score", "detection_index"):
            assert want[key].attrs[attr] == got[key].attrs[attr], (key, attr)


def test_cluster_detections_equal_one_process_and_resume(
    client: Client, folder: Path, tmp_path: Path
) -> None:
    sources, model = _photos(folder), str(folder / "yolov8.onnx")
    names = ["two", "one", "empty"]
    alone = explain_detections_many_sync(
        sources, model, CONFIG, EVERY, names=names, store=tmp_path / "one.zarr"
    )
    assert isinstance(alone[2], InputFailure)
    report = explain_detections_on_cluster(
        client, sources, model, CONFIG, EVERY, store=tmp_path / "dask.zarr", names=names
    )
    first, second, empty = report.outcomes
    assert isinstance(empty, InputFailure) and "highest score found" in str(empty.error)
    assert isinstance(first, InputSummary) and isinstance(second, InputSummary)
    assert [e["class"] for e in first.summary["explained"]] == [2, 0]
    assert [e["class"] for e in second.summary["explained"]] == [1]
    assert_same_targets(tmp_path / "one.zarr", tmp_path / "dask.zarr")
    local = alone[0]
    assert isinstance(local, DetectionResult)
    for mine, theirs in zip(local.summary()["explained"], first.summary["explained"]):
        assert mine["explanation"] == theirs["explanation"]
        assert mine["box"] == theirs["box"] and mine["group"] == theirs["group"]
    assert all(counters["calls"] > 0 for counters in report.workers.values())
    calls = sum(c["mutants"] for c in report.workers.values())

    # a rerun resumes every target from the store: only each input's detection is asked again
    again = explain_detections_on_cluster(
        client, sources, model, CONFIG, EVERY, store=tmp_path / "dask.zarr", names=names
    )
    for outcome in again.outcomes[:2]:
        assert isinstance(outcome, InputSummary)
        for explained in outcome.summary["explained"]:
            stats = explained["stats"]
            assert stats["resumed_iterations"] == stats["iterations"] == 3
    assert sum(c["mutants"] for c in again.workers.values()) < calls / 4
    assert_same_targets(tmp_path / "one.zarr", tmp_path / "dask.zarr")

    # --overwrite: every target is searched again from nothing, to the same bytes
    fresh = explain_detections_on_cluster(
        client, sources, model, CONFIG, EVERY, store=tmp_path / "dask.zarr", names=names,
        overwrite=True,
    )  # fmt: skip
    for outcome in fresh.outcomes[:2]:
        assert isinstance(outcome, InputSummary)
        assert all(e["stats"]["resumed_iterations"] == 0 for e in outcome.summary["explained"])
    assert_same_targets(tmp_path / "one.zarr", tmp_path / "dask.zarr")


def test_the_api_runs_detections_on_a_client(client: Client, folder: Path, tmp_path: Path) -> None:
    import anyio

    sources = _photos(folder)[:2]
    heard: list[int] = []

    async def main() -> list[object]:
        return await explain_detections_many(
            sources, str(folder / "yolov8.onnx"), CONFIG, DetectionSettings(layout="yolov8"),
            store=tmp_path / "api.zarr", client=client,
            on_result=lambda index, _outcome: heard.append(index),
        )  # fmt: skip

    outcomes = anyio.run(main)
    assert sorted(heard) == [0, 1]
    assert all(isinstance(o, InputSummary) for o in outcomes)
    root = zarr.open_group(str(tmp_path / "api.zarr"), mode="r")
    groups = sorted(e["group"] for o in outcomes for e in o.summary["explained"])  # type: ignore[attr-defined]
    assert sorted(root.group_keys()) == groups and len(groups) == 2
    assert [g.split("__")[0] for g in groups] == ["one.png", "two.png"]


def test_the_cli_runs_a_directory_on_local_dask(folder: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [
        sys.executable, "-m", "rex_stream.cli", "photos", "--model", "yolov8.onnx",
        "--detections", "yolov8", "--all-detections", "--iters", "3", "--seed", "4",
        "--min-box-size", "2", "--dask", "local:2", "--store", "cli.zarr", "--json", "-q",
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, cwd=folder, env=env, timeout=200)
    assert done.returncode == 1, done.stderr  # the empty photo fails alone
    summaries = {Path(s["input"]).name: s for s in json.loads(done.stdout)}
    assert "highest score found" in summaries["empty.png"]["error"]
    assert [e["class"] for e in summaries["two.png"]["explained"]] == [2, 0]
    root = zarr.open_group(str(folder / "cli.zarr"), mode="r")
    groups = sorted(e["group"] for s in summaries.values() for e in s.get("explained", []))
    assert sorted(root.group_keys()) == groups and len(groups) == 3
    pictures = subprocess.run(
        [*args, "--output", "pictures"], capture_output=True, text=True, cwd=folder, env=env,
        timeout=60,
    )  # fmt: skip
    assert pictures.returncode == 2
    assert pictures.stderr.count("\n") == 1 and "--output" in pictures.stderr
