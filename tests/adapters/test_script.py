"""ReX's --script contract as a backend, end to end through the CLI, with real onnxruntime
sessions inside the scripts; bad scripts are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli.test_cli import rex
from tests.onnx_models import planted_image

SCRIPT = """
import numpy as np
import onnxruntime as ort
from PIL import Image

SESSION = ort.InferenceSession({model!r})


class Data:  # what ReX's preprocess returns: the model input in .data
    def __init__(self, data):
        self.data = data


class Prediction:
    def __init__(self, classification, confidence):
        self.classification = classification
        self.confidence = confidence


def model_shape():
    return ["N", 1, 24, 24]


def preprocess(path, shape, device, mode):
    pixels = np.asarray(Image.open(path).convert("L"), np.float32) / 255.0
    return Data(pixels[None, None])


def prediction_function(mutants, target=None, raw=False, binary_threshold=None):
    batch = np.asarray(mutants, np.float32)
    logits = SESSION.run(None, {{"input": batch}})[0]
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = exp / exp.sum(axis=1, keepdims=True)
    if raw and {raw_rows}:
        return probabilities
    return [Prediction(int(p.argmax()), float(p.max())) for p in probabilities]
"""


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("script") / "planted.png"
    Image.fromarray((planted_image()[0] * 255).round().astype(np.uint8)).save(path)
    return path


def _script(folder: Path, model: Path, raw_rows: bool = True, name: str = "model.py") -> Path:
    path = folder / name
    path.write_text(SCRIPT.format(model=str(model), raw_rows=raw_rows))
    return path


@pytest.mark.parametrize("raw_rows", [True, False], ids=["raw-rows", "predictions-only"])
def test_a_rex_script_runs_unchanged(
    patch_model: Path, picture: Path, tmp_path: Path, raw_rows: bool
) -> None:
    script = _script(tmp_path, patch_model, raw_rows)
    out = rex(str(picture), "--script", str(script), "--iters", "4", "--seed", "1", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["target"]["class"] == 1
    assert 0 < summary["explanation"]["area"] < 0.5


def test_processed_input_skips_preprocessing(patch_model: Path, tmp_path: Path) -> None:
    script = _script(tmp_path, patch_model)
    array = tmp_path / "ready.npy"
    np.save(array, planted_image()[None])
    out = rex(str(array), "--script", str(script), "--processed", "--iters", "3", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["target"]["class"] == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "def model_shape():\n    return ['N', 1, 24, 24]\n",
            "does not define prediction_function",
        ),
        ("raise RuntimeError('no GPU here')\n", "failed to load (RuntimeError: no GPU here)"),
        (
            "def model_shape():\n    return ['N', 1, 24, 24]\n"
            "def preprocess(path, shape, device, mode):\n"
            "    return __import__('numpy').zeros((1, 1, 24, 24))\n"
            "def prediction_function(mutants, target=None, raw=False, binary_threshold=None):\n"
            "    raise ValueError('model exploded')\n",
            "prediction_function failed (ValueError: model exploded)",
        ),
        (
            "def model_shape():\n    return ['N', 3, 32, 32]\n"
            "def preprocess(path, shape, device, mode):\n"
            "    return __import__('numpy').zeros((1, 1, 24, 24))\n"
            "def prediction_function(mutants, target=None, raw=False, binary_threshold=None):\n"
            "    return []\n",
            "but model_shape is",
        ),
    ],
    ids=["no-prediction-function", "raises-on-import", "raises-on-predict", "wrong-shape"],
)
def test_bad_scripts_are_one_line_errors(
    picture: Path, tmp_path: Path, body: str, message: str
) -> None:
    script = tmp_path / "bad.py"
    script.write_text(body)
    out = rex(str(picture), "--script", str(script), "--iters", "1")
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rex-stream: error:"), out.stderr
    assert message in lines[0]


def test_script_and_model_together_is_an_error(
    patch_model: Path, picture: Path, tmp_path: Path
) -> None:
    script = _script(tmp_path, patch_model)
    out = rex(str(picture), "--script", str(script), "--model", str(patch_model))
    assert out.returncode != 0 and "not both" in out.stderr
