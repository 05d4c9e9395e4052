"""The ``rex-stream l2x-train`` and ``rex-stream l2x`` sub-commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rex_stream.cli.main import main

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"
TABULAR = MODELS / "tabular-breast-cancer.onnx"
TRAIN = MODELS / "tabular-breast-cancer-train.csv"
READING = ["--mode", "tabular", "--mode-option", f"baseline={TRAIN}", "--scores", "probabilities"]


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "rows.npy"
    np.save(path, np.loadtxt(TRAIN, delimiter=",", skiprows=1, dtype=np.float32)[:100])
    return path


def test_train_then_explain(rows: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "explainer.npz"
    code = main(
        [
            "l2x-train",
            str(rows),
            "--model",
            str(TABULAR),
            *READING,
            "--k",
            "3",
            "--epochs",
            "8",
            "--max-gap",
            "1",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["k"] == 3 and metrics["training_queries"] > 0 and out.exists()
    one = tmp_path / "one.npy"
    np.save(one, np.load(rows)[7:8])
    mask = tmp_path / "mask.npy"
    assert main(["l2x", str(one), "--explainer", str(out), "--json", "--save-mask", str(mask)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["queries"] == 0 and len(summary["selected_regions"]) == 3
    assert np.load(mask).sum() == 3
    assert main(["l2x", str(one), "--explainer", str(out), "--model", str(TABULAR)]) == 0
    assert "2 queries" in capsys.readouterr().out
    picture, store = tmp_path / "selection.png", tmp_path / "l2x.zarr"
    argv = [
        "l2x",
        str(one),
        "--explainer",
        str(out),
        "--output",
        str(picture),
        "--store",
        str(store),
    ]
    assert main([*argv, "--json"]) == 0
    stored = json.loads(capsys.readouterr().out)["store"]
    import zarr

    group = zarr.open_group(stored, mode="r")
    np.testing.assert_array_equal(np.asarray(group["l2x_selection"][:]), np.load(mask))  # type: ignore[index]
    assert picture.stat().st_size > 1000
    assert main(argv) != 0 and "--overwrite" in capsys.readouterr().err
    spectrum = MODELS / "spectral-markers-A.npy"
    code = main(["l2x", str(spectrum), "--explainer", str(out), "--mode", "spectral"])
    error = capsys.readouterr().err.strip()
    assert code != 0 and error.startswith("rex-stream: error:") and "\n" not in error
    code = main(
        ["l2x", str(one), "--explainer", str(out), "--model", str(MODELS / "spectral-markers.onnx")]
    )
    error = capsys.readouterr().err.strip()
    assert code != 0 and "trained for model input shape" in error


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ("python:tests.l2x.black_boxes:labels_only", "class labels"),
        ("python:tests.l2x.black_boxes:not_finite", "NaN or infinite"),
    ],
)
def test_unusable_scores_are_one_line_errors(
    rows: Path, tmp_path: Path, backend: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "explainer.npz"
    code = main(["l2x-train", str(rows), "--backend", backend, *READING, "--out", str(out)])
    error = capsys.readouterr().err.strip()
    assert code != 0 and error.startswith("rex-stream: error:") and message in error
    assert "\n" not in error and not out.exists()
    code = main(["cem", str(TRAIN), "--backend", backend, *READING])
    error = capsys.readouterr().err.strip()
    assert code != 0 and message in error


def test_missing_explainer_and_bad_out(rows: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["l2x", str(rows), "--explainer", "nope.npz"]) != 0
    assert "no such explainer" in capsys.readouterr().err
    assert main(["l2x-train", str(rows), "--model", str(TABULAR), "--out", "x.txt"]) != 0
    assert ".npz" in capsys.readouterr().err


def test_train_on_a_directory_of_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    folder = tmp_path / "digits"
    (folder / "more").mkdir(parents=True)
    images = np.load(MODELS / "digits-train.npy")[:40]
    for index, image in enumerate(images):
        place = folder / "more" if index % 2 else folder
        Image.fromarray((image.astype(np.uint16) * 255 // 16).astype(np.uint8)).save(
            place / f"d{index:02d}.png"
        )
    out = tmp_path / "digits.npz"
    model = str(MODELS / "digits-mlp.onnx")
    argv = ["l2x-train", str(folder), "--model", model, "--k", "8", "--epochs", "4"]
    assert main([*argv, "--max-gap", "1", "--out", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["regions"] == 64 and metrics["training_inputs"] + metrics["held_out"] == 40
    picture = tmp_path / "selection.png"
    assert (
        main(["l2x", str(folder / "d00.png"), "--explainer", str(out), "--output", str(picture)])
        == 0
    )
    assert picture.stat().st_size > 1000
