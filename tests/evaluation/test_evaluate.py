"""Evaluation end to end on real onnxruntime models: meaning, sharing, determinism, resume, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr

from rex_stream import evaluate_sync
from rex_stream.config import ExplainConfig
from rex_stream.errors import ConfigError, InputError, StoreError
from tests.onnx_models import patch_weights, planted_image

ROOT = Path(__file__).resolve().parents[2]
FAITHFUL = (
    "pixel-flipping:features_in_step=8,selectivity:patch_size=4,"
    "region-perturbation:patch_size=4:regions_evaluation=12"
)


def _maps() -> dict[str, np.ndarray]:
    on_patch = patch_weights()[0, 0] + np.linspace(0, 0.01, 576).reshape(24, 24)
    off_patch = 1.0 - on_patch
    return {"on": on_patch, "off": off_patch}


def test_faithfulness_prefers_the_map_on_the_planted_patch(patch_model: Path) -> None:
    result = evaluate_sync(
        planted_image(),
        str(patch_model),
        _maps(),
        FAITHFUL + ",faithfulness-correlation:subset_size=36,insertion,deletion,"
        "monotonicity-arya:features_in_step=16,infidelity,road:percentages=10+30+50+70",
    )
    scores = result.inputs[0].results
    assert result.inputs[0].target == 1
    for metric in ("pixel-flipping:features_in_step=8", "selectivity:patch_size=4"):
        assert scores["on"][metric].score < scores["off"][metric].score, metric
    region = "region-perturbation:patch_size=4:regions_evaluation=12"
    assert scores["on"][region].score > scores["off"][region].score
    assert scores["on"]["faithfulness-correlation:subset_size=36"].score > 0.5
    assert scores["on"]["insertion"].score > scores["off"]["insertion"].score
    assert scores["on"]["deletion"].score < scores["off"]["deletion"].score
    assert scores["on"]["insertion"].curve.size == 576 // 6 + 1  # type: ignore[union-attr]
    # adding pixels ≥ 0 to a black image only raises the patch logit: monotonic for any map
    arya = "monotonicity-arya:features_in_step=16"
    assert scores["on"][arya].score == scores["off"][arya].score == 1.0
    assert scores["on"]["infidelity"].score >= 0.0
    road = "road:percentages=10+30+50+70"
    assert scores["on"][road].score == 0.0 and scores["off"][road].score == 1.0
    curve = scores["on"]["pixel-flipping:features_in_step=8"].curve
    assert curve is not None and curve.size == 576 // 8 and curve[-1] < curve[0]


def test_rows_are_shared_and_results_do_not_depend_on_batching(patch_model: Path) -> None:
    maps = {**_maps(), "again": _maps()["on"]}
    metrics = FAITHFUL + ",faithfulness-correlation:nr_runs=10,sparseness"
    batched = evaluate_sync(planted_image(), str(patch_model), maps, metrics, seed=3)
    config = ExplainConfig()
    config = replace(config, scheduler=replace(config.scheduler, max_batch=1, max_inflight=1))
    single = evaluate_sync(planted_image(), str(patch_model), maps, metrics, seed=3, config=config)
    for name in maps:
        for label, result in batched.inputs[0].results[name].items():
            assert single.inputs[0].results[name][label].score == result.score, (name, label)
    # the third map repeats the first: none of its rows is sent again, f(x) is sent once
    per_map = sum(r.queries for r in batched.inputs[0].results["on"].values())
    assert batched.requested == 3 * per_map + 1  # and the prediction of the input
    assert batched.queries <= 2 * per_map - 2 + 1
    assert single.calls == single.queries


def test_resume_redoes_exactly_the_unfinished_pairs(patch_model: Path, tmp_path: Path) -> None:
    store = tmp_path / "eval.zarr"
    metrics = FAITHFUL + ",faithfulness-correlation:nr_runs=10"
    first = evaluate_sync(planted_image(), str(patch_model), _maps(), metrics, store=store)
    with pytest.raises(StoreError, match="already exists"):
        evaluate_sync(planted_image(), str(patch_model), _maps(), metrics, store=store)
    # the finished input's records are packed (engine/store_pack.py); one of them damaged
    # is run again, the other seven are resumed
    group = zarr.open_group(str(store / "array" / "metric"), mode="a")
    (pack,) = group.array_keys()
    records = group[pack].attrs["records"]
    assert len(records) == 8
    spans = [int(np.prod(r["shape"])) for r in records]
    assert spans[5] > 0
    group[pack][sum(spans[:5])] = group[pack][sum(spans[:5])] + 1.0
    again = evaluate_sync(
        planted_image(), str(patch_model), _maps(), metrics, store=store, resume=True
    )
    assert again.inputs[0].resumed == 7
    assert again.queries < first.queries
    assert (
        again.summary()["inputs"][0]["attributions"] == first.summary()["inputs"][0]["attributions"]
    )
    with pytest.raises(StoreError, match="different settings"):
        evaluate_sync(
            planted_image(), str(patch_model), _maps(), metrics, store=store, resume=True, seed=9
        )


def test_bad_inputs_are_one_line_errors(patch_model: Path) -> None:
    with pytest.raises(ConfigError, match="pointing-game need a ground-truth mask"):
        evaluate_sync(planted_image(), str(patch_model), _maps(), "pointing-game")
    with pytest.raises(InputError, match=r"shape \(5, 5\)"):
        evaluate_sync(planted_image(), str(patch_model), np.ones((5, 5)), "sparseness")
    with pytest.raises(ConfigError, match="patch_size=30 is larger"):
        evaluate_sync(planted_image(), str(patch_model), _maps(), "selectivity:patch_size=30")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rex_stream.cli", "evaluate", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_cli_table_json_and_errors(tiny_cnn: Path, tiny_image: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.npy"
    np.save(good, np.random.default_rng(1).random((32, 32)).astype(np.float32))
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((32, 32), np.nan))
    mask = tmp_path / "mask.npy"
    np.save(mask, np.pad(np.ones((8, 8)), 12))
    common = [str(tiny_image), "--model", str(tiny_cnn), "--attribution", f"mine={good}"]
    out = _cli(*common, "--metrics", "selectivity:patch_size=4,auc", "--mask", str(mask), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    entry = summary["inputs"][0]["attributions"]["mine"]
    assert len(entry["selectivity:patch_size=4"]["curve"]) == 64
    assert summary["queries"] == 65 and summary["metrics"]["auc"]["better"] == "higher"
    picture = tmp_path / "eval.png"
    plotted = _cli(
        *common, "--metrics", "selectivity:patch_size=4,sparseness", "--plot", str(picture)
    )
    assert plotted.returncode == 0, plotted.stderr
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = _cli(*common, "--metrics", "sparseness")
    assert table.returncode == 0 and "sparseness" in table.stdout and "mine" in table.stdout
    planned = _cli(*common, "--metrics", "selectivity:patch_size=4", "--max-queries", "65")
    assert planned.returncode == 0
    assert "plan for tiny: selectivity:patch_size=4 64 rows" in planned.stderr
    cases = [
        (["--metrics", "pixelflip"], "unknown metric 'pixelflip'; valid metrics:"),
        (["--metrics", "auc"], "auc need a ground-truth mask (--mask)"),
        (["--metrics", "selectivity:size=3"], "has no parameter 'size'"),
        (["--metrics", "sparseness", "--attribution", f"bad={nan}"], "contains NaN"),
        (
            ["--metrics", "selectivity:patch_size=4", "--max-queries", "50"],
            "needs 65 queries so far (selectivity:patch_size=4 64 per attribution), "
            "more than --max-queries 50",
        ),
    ]
    for extra, message in cases:
        failed = _cli(*common, *extra)
        assert failed.returncode != 0
        lines = [x for x in failed.stderr.strip().splitlines() if not x.startswith("plan for")]
        assert len(lines) == 1 and lines[0].startswith("rex-stream: error: "), failed.stderr
        assert message in lines[0]
    wrong = _cli(
        str(tiny_image),
        "--model",
        str(tiny_cnn),
        "--attribution",
        str(mask.with_name("x.npy")),
        "--metrics",
        "auc",
        "--mask",
        str(mask),
    )
    assert wrong.returncode != 0 and "no such file" in wrong.stderr


def test_ranks_follow_each_metric_direction(patch_model: Path) -> None:
    from rex_stream.pictures.evaluation import ranks

    result = evaluate_sync(
        planted_image(), str(patch_model), _maps(), "selectivity:patch_size=4,insertion"
    )
    assert ranks(result) == {"selectivity:patch_size=4": [1.0, 2.0], "insertion": [1.0, 2.0]}


def test_scores_the_maps_of_a_rex_stream_store(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.zarr"
    command = [sys.executable, "-m", "rex_stream.cli", str(tiny_image), "--model", str(tiny_cnn)]
    explained = subprocess.run(
        [*command, "--iters", "2", "--seed", "1", "--min-box-size", "4", "--store", str(runs)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert explained.returncode == 0, explained.stderr
    stored = np.asarray(zarr.open_group(str(runs), mode="r")["tiny/responsibility"][...])
    metrics = "sparseness,selectivity:patch_size=8"
    from_store = evaluate_sync(str(tiny_image), str(tiny_cnn), {"rex": runs}, metrics)
    from_group = evaluate_sync(str(tiny_image), str(tiny_cnn), {"rex": f"{runs}/tiny"}, metrics)
    from_array = evaluate_sync(str(tiny_image), str(tiny_cnn), {"rex": stored}, metrics)
    assert from_store.summary()["inputs"] == from_array.summary()["inputs"]
    assert from_group.summary()["inputs"] == from_array.summary()["inputs"]
    with pytest.raises(InputError, match="holds no responsibility map for 'tiny'"):
        evaluate_sync(str(tiny_image), str(tiny_cnn), {"rex": f"{runs}/other"}, metrics)


def test_a_directory_run_scores_the_stores_maps_and_a_folder_of_maps(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    (photos / "cats").mkdir(parents=True)
    (photos / "a.png").write_bytes(tiny_image.read_bytes())
    (photos / "cats" / "tom.png").write_bytes(tiny_image.read_bytes())
    runs = tmp_path / "runs.zarr"
    command = [sys.executable, "-m", "rex_stream.cli", str(photos), "--model", str(tiny_cnn)]
    explained = subprocess.run(
        [*command, "--iters", "2", "--seed", "1", "--min-box-size", "4", "--store", str(runs)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert explained.returncode == 0, explained.stderr
    maps = tmp_path / "maps"
    maps.mkdir()
    root = zarr.open_group(str(runs), mode="r")
    for group, stem in (("a.png", "a"), ("cats__tom.png", "tom")):
        np.save(maps / f"{stem}.npy", np.asarray(root[f"{group}/responsibility"][...]))
    result = evaluate_sync(photos, str(tiny_cnn), {"store": runs, "files": maps}, "sparseness")
    assert [Path(s.input).name for s in result.inputs] == ["a.png", "tom.png"]
    for scores in result.inputs:
        assert scores.results["store"]["sparseness"] == scores.results["files"]["sparseness"]
