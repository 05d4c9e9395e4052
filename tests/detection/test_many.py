"""Detection over many inputs (a directory, a list of files) through one scheduler, resumed per
input and target; ``--multi`` on a detection target; ``--dask`` without a store refused in one
line (the cluster run: tests/distributed/test_dask_detections.py)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import pytest
import zarr

from rex_stream.config import ExplainConfig, SearchConfig
from rex_stream.engine.failure_log import read_failures
from rex_stream.result import InputFailure
from rex_stream.runs.detect import DetectionResult, DetectionSettings, explain_detections
from rex_stream.runs.detect_many import explain_detections_many
from tests.detection.commands import run_cli
from tests.detection.planted import planted_photo, save_detector

FLAGS = ["--iters", "3", "--seed", "4", "--min-box-size", "2"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("many")
    save_detector(root / "yolov8.onnx", "yolov8")
    photos = root / "photos"
    (photos / "sub").mkdir(parents=True)
    planted_photo(photos / "two.png", [(2, 3, 0), (5, 6, 2)])
    planted_photo(photos / "sub" / "one.png", [(1, 1, 1)], seed=3)
    planted_photo(photos / "empty.png", [], seed=5)
    return root


def test_a_directory_explains_every_detection_of_every_input(folder: Path) -> None:
    done = run_cli(
        "photos", "--model", "yolov8.onnx", "--detections", "yolov8", "--all-detections",
        *FLAGS, "--store", "dir.zarr", "--output", "pictures", "--json", cwd=folder,
    )  # fmt: skip
    assert done.returncode == 1  # the empty photo fails alone, the others are explained
    summaries = {Path(s["input"]).name: s for s in json.loads(done.stdout)}
    assert "highest score found" in summaries["empty.png"]["error"]
    assert done.stderr.count("rex-stream: error:") == 1
    recorded = read_failures(folder / "dir.zarr")  # for the report page
    assert [(r["name"], "highest score found" in r["error"]) for r in recorded] == [
        ("empty.png", True)
    ]
    assert [e["class"] for e in summaries["two.png"]["explained"]] == [2, 0]
    assert [e["class"] for e in summaries["one.png"]["explained"]] == [1]
    assert sorted(p.name for p in (folder / "pictures").iterdir()) == [
        "sub__one.png.png",
        "two.png.png",
    ]
    # each target of the directory run equals the same photo explained alone
    alone = run_cli(
        "photos/two.png", "--model", "yolov8.onnx", "--detections", "yolov8",
        "--all-detections", *FLAGS, "--store", "alone.zarr", "-n", cwd=folder,
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr
    together = zarr.open_group(str(folder / "dir.zarr"), mode="r")
    single = zarr.open_group(str(folder / "alone.zarr"), mode="r")
    for index in (0, 1):
        np.testing.assert_array_equal(
            together[f"two.png__detection-{index}"]["responsibility"][:],
            single[f"two__detection-{index}"]["responsibility"][:],
        )
        assert together[f"two.png__detection-{index}"].attrs["target_class"] == [2, 0][index]
    # resumed: every target of every input comes whole from the store
    again = run_cli(
        "photos", "--model", "yolov8.onnx", "--detections", "yolov8", "--all-detections",
        *FLAGS, "--store", "dir.zarr", "--resume", "--json", cwd=folder,
    )  # fmt: skip
    assert again.returncode == 1
    resumed = {Path(s["input"]).name: s for s in json.loads(again.stdout)}
    for name in ("two.png", "one.png"):
        for first, explained in zip(summaries[name]["explained"], resumed[name]["explained"]):
            stats = explained["stats"]
            assert stats["resumed_iterations"] == stats["iterations"] == 3
            assert stats["queries"] < first["stats"]["queries"]  # the search is not redone
            assert explained["explanation"] == first["explanation"]


def test_several_files_on_the_command_line(folder: Path) -> None:
    done = run_cli(
        "photos/two.png", "photos/sub/one.png", "--model", "yolov8.onnx", "--detections",
        "yolov8", *FLAGS, "-n", "--heatmap", "maps", "--json", cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summaries = {Path(s["input"]).name: s for s in json.loads(done.stdout)}
    assert sorted(summaries) == ["one.png", "two.png"]
    assert [len(s["explained"]) for s in summaries.values()] == [1, 1]
    assert sorted(p.name for p in (folder / "maps").iterdir()) == [
        "one.png-heatmap.png",
        "two.png-heatmap.png",
    ]


def test_a_list_of_inputs_shares_one_scheduler_and_matches_each_alone(folder: Path) -> None:
    config = ExplainConfig(search=SearchConfig(iters=3, seed=4, min_box_size=2))
    settings = DetectionSettings(layout="yolov8", all_detections=True)
    sources = [folder / "photos" / "two.png", folder / "photos" / "sub" / "one.png"]
    heard: list[int] = []

    async def main() -> list[DetectionResult | InputFailure]:
        return await explain_detections_many(
            sources,
            str(folder / "yolov8.onnx"),
            config,
            settings,
            on_result=lambda index, _outcome: heard.append(index),
        )

    outcomes = anyio.run(main)
    assert sorted(heard) == [0, 1]
    for source, outcome in zip(sources, outcomes):
        assert isinstance(outcome, DetectionResult)

        async def one(source: Path = source) -> DetectionResult:
            return await explain_detections(source, str(folder / "yolov8.onnx"), config, settings)

        reference = anyio.run(one)
        assert [e.detection for e in outcome.explained] == [
            e.detection for e in reference.explained
        ]
        for mine, theirs in zip(outcome.explained, reference.explained):
            np.testing.assert_array_equal(
                mine.explanation.responsibility, theirs.explanation.responsibility
            )


def test_two_inputs_of_one_name_are_refused(folder: Path) -> None:
    async def main() -> None:
        await explain_detections_many(
            [folder / "photos" / "two.png", folder / "photos" / "two.png"],
            str(folder / "yolov8.onnx"),
        )

    with pytest.raises(Exception, match="would share the name"):
        anyio.run(main)


def test_multi_explains_a_detection_with_spotlights(folder: Path) -> None:
    done = run_cli(
        "photos/two.png", "--model", "yolov8.onnx", "--detections", "yolov8", *FLAGS,
        "--multi", "--json", cwd=folder,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (explained,) = json.loads(done.stdout)["explained"]
    assert explained["multi"]["kept"] >= 1
    assert explained["explanations"][0]["confidence"] > 0.5
    assert explained["inside_box"] > 0.5  # the first explanation lies mostly on the object


def test_dask_without_a_store_is_refused_in_one_line(folder: Path) -> None:
    done = run_cli(
        "photos", "--model", "yolov8.onnx", "--detections", "yolov8", "--dask", "local:1",
        *FLAGS, cwd=folder,
    )  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.startswith("rex-stream: error:") and done.stderr.count("\n") == 1
    assert "--dask needs --store" in done.stderr


def test_the_picture_of_a_multi_run_draws_every_spotlight(folder: Path, tmp_path: Path) -> None:
    from rex_stream.cli.detect_output import write_pictures
    from rex_stream.pictures.detections import DrawnTarget, shown_regions, spotlight_masks

    config = ExplainConfig(search=SearchConfig(iters=3, seed=4, min_box_size=2)).with_overrides(
        strategy="multi", spotlights=8
    )
    result = anyio.run(
        lambda: explain_detections(
            folder / "photos" / "two.png", str(folder / "yolov8.onnx"), config,
            DetectionSettings(layout="yolov8", all_detections=True, score_threshold=0.3),
        )
    )  # fmt: skip  # at 0.3, two disjoint parts of a square can each show it
    targets = [DrawnTarget(e.photo_box, "t", e.explanation) for e in result.explained]
    kept = [len(e.explanation.multi.kept) for e in result.explained]  # type: ignore[union-attr]
    assert max(kept) >= 2, kept  # some target has several explanations to draw
    regions = shown_regions(targets, (64, 64))
    assert [len(r) for r in regions] == kept
    for target, drawn in zip(result.explained, regions):
        masks = spotlight_masks(target.explanation)
        spotlights = target.explanation.multi.kept  # type: ignore[union-attr]  # as the JSON lists
        assert [m.tolist() for m in masks] == [k.mask.tolist() for k in spotlights]
        for mask, shown in zip(masks, drawn):
            assert mask.any() and np.array_equal(shown, mask)  # at the model's own size
    written = write_pictures(result, tmp_path / "multi.png", None)
    assert (tmp_path / "multi.png").stat().st_size > 0 and "explanation picture" in written


def test_cluster_options_without_dask_are_refused_in_one_line(folder: Path) -> None:
    done = run_cli(
        "photos", "--model", "yolov8.onnx", "--detections", "yolov8", "--inputs-per-task", "2",
        *FLAGS, cwd=folder,
    )  # fmt: skip
    assert done.returncode != 0 and done.stderr.count("\n") == 1
    assert "--inputs-per-task needs --dask" in done.stderr
