"""The ``rex-stream cem`` sub-command: JSON, pictures, stores, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rex_stream.cli.main import main

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"


def test_cem_json_picture_and_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    picture = tmp_path / "pp.png"
    code = main(
        [
            "cem",
            str(MODELS / "spectral-markers-B.npy"),
            "--model",
            str(MODELS / "spectral-markers.onnx"),
            "--steps",
            "40",
            "--store",
            str(tmp_path / "run.zarr"),
            "--output",
            str(picture),
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "cem-pp" and summary["found"]
    assert summary["pertinent_positive"]["class"] == summary["target"]["class"] == 2
    assert 0 < summary["stats"]["queries"] <= 1 + 2 * 40 * 41
    assert picture.stat().st_size > 1000
    import zarr

    group = zarr.open_group(str(tmp_path / "run.zarr"), mode="r")["spectral-markers-B"]
    assert np.asarray(group["pertinent_positive"][:]).shape == (1, 1356)  # type: ignore[index]
    again = main(
        [
            "cem",
            str(MODELS / "spectral-markers-B.npy"),
            "--model",
            str(MODELS / "spectral-markers.onnx"),
            "--steps",
            "40",
            "--store",
            str(tmp_path / "run.zarr"),
            "--resume",
            "--json",
        ]
    )
    assert again == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["stats"]["resumed_chains"] == 2
    assert resumed["pertinent_positive"] == summary["pertinent_positive"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--kind", "pn", "--model", "audio-keywords16k.onnx"], "addition basis"),
        (["--penalties", "a,b", "--model", "spectral-markers.onnx"], "--penalties"),
        (["--steps", "0", "--model", "spectral-markers.onnx"], "cem.steps"),
        ([], "no model"),
    ],
)
def test_cem_mistakes_are_one_line_errors(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = (
        "audio-example-left.flac"
        if "audio-keywords16k.onnx" in arguments
        else ("spectral-markers-A.npy")
    )
    arguments = [str(MODELS / a) if a.endswith(".onnx") else a for a in arguments]
    code = main(["cem", str(MODELS / source), *arguments])
    error = capsys.readouterr().err.strip()
    assert code != 0
    assert error.startswith("rex-stream: error:") and message in error
    assert "\n" not in error


def test_a_store_made_before_models_were_identified_still_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import zarr

    command = [
        "cem",
        str(MODELS / "spectral-markers-B.npy"),
        "--model",
        str(MODELS / "spectral-markers.onnx"),
        "--steps",
        "20",
        "--store",
        str(tmp_path / "run.zarr"),
        "--json",
    ]
    assert main(command) == 0
    first = json.loads(capsys.readouterr().out)
    group = zarr.open_group(str(tmp_path / "run.zarr"), mode="r+")["spectral-markers-B"]
    settings = dict(group.attrs["settings"])  # type: ignore[arg-type]
    settings["model"] = {k: v for k, v in settings["model"].items() if k != "identity"}
    group.attrs["settings"] = settings  # as an older rex-stream wrote it
    assert main([*command, "--resume"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["stats"]["resumed_chains"] == 2
    assert resumed["pertinent_positive"] == first["pertinent_positive"]
