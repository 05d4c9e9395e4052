"""The evaluation picture draws every input (a row of panels each, capped with a note), and
region-perturbation's curve is drawn over the fraction of the features like the other
curves (issue 27, item 11)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from rex_stream.cli.main import main
from rex_stream.pictures.evaluation import save_plot, short_names

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"
DIGITS = MODELS / "digits-mlp.onnx"
METRICS = "pixel-flipping:features_in_step=4,region-perturbation:patch_size=2,sparseness"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three digits and two attributions of each (their pixels, and noise)."""
    root = tmp_path_factory.mktemp("plot")
    digits = np.load(MODELS / "digits-test.npy")[:3]
    noise = np.random.default_rng(0).random((3, 8, 8))
    for name in ("inputs", "pixels", "noise"):
        (root / name).mkdir()
    for index, digit in enumerate(digits):
        np.save(root / "inputs" / f"digit{index}.npy", (digit[None] / 16.0).astype(np.float32))
        np.save(root / "pixels" / f"digit{index}.npy", digit.reshape(8, 8) / 16.0)
        np.save(root / "noise" / f"digit{index}.npy", noise[index])
    return {name: root / name for name in ("inputs", "pixels", "noise")}


def _evaluate(folders: dict[str, Path], *extra: str) -> int:
    return main(["evaluate", str(folders["inputs"]), "--model", str(DIGITS),
                 "--attribution", f"pixels={folders['pixels']}",
                 "--attribution", f"noise={folders['noise']}",
                 "--metrics", METRICS, "-q", *extra])  # fmt: skip


def _texts(svg: Path) -> str:
    return svg.read_text()


def test_the_plot_has_a_row_per_input(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    svg = tmp_path / "plot.svg"
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text in the SVG
        assert _evaluate(folders, "--plot", str(svg)) == 0
    drawn = _texts(svg)
    for index in range(3):
        assert f"digit{index}.npy: class" in drawn
    assert "inputs (every input" not in drawn  # nothing left out
    assert drawn.count("attributions ranked per metric") == 3
    assert str(folders["inputs"]) not in drawn  # short names, not absolute paths
    capsys.readouterr()


def test_a_capped_plot_says_how_many_inputs_it_leaves_out(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rex_stream import evaluate_sync

    inputs = sorted(str(p) for p in folders["inputs"].iterdir())
    maps = {"pixels": str(folders["pixels"]), "noise": str(folders["noise"])}
    result = evaluate_sync(inputs, str(DIGITS), maps, METRICS)
    svg = tmp_path / "capped.svg"
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        save_plot(result, svg, max_inputs=2)
    drawn = _texts(svg)
    assert "digit0.npy: class" in drawn and "digit1.npy: class" in drawn
    assert "digit2.npy" not in drawn
    assert "the first 2 of 3 inputs" in drawn
    one = tmp_path / "one.svg"
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        save_plot(result, one, input_index=2)
    assert "digit2.npy: class" in _texts(one) and "digit0.npy" not in _texts(one)
    capsys.readouterr()


def test_region_perturbation_is_drawn_over_the_fraction_of_features(
    folders: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _evaluate(folders, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    scores = summary["inputs"][0]["attributions"]["pixels"]
    region = scores["region-perturbation:patch_size=2"]
    # an 8 × 8 input in 2 × 2 patches: 16 patches, each 1/16 of the features
    assert region["x"] == [(j + 1) / 16 for j in range(len(region["curve"]))]
    assert region["x_axis"].startswith("fraction of features removed")
    flipping = scores["pixel-flipping:features_in_step=4"]
    assert flipping["x"][-1] == region["x"][-1] == 1.0


def test_inputs_sharing_a_file_name_keep_their_folder() -> None:
    names = short_names(["/data/a/cat.png", "/data/b/cat.png", "/data/b/dog.png"])
    assert names == ["a/cat.png", "b/cat.png", "dog.png"]
