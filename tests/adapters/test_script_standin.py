"""A ReX tutorial script that imports ``rex_xai`` runs unchanged without ReX installed, and
the stand-in never leaks out of the script's loading."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from rex_stream.adapters.rex_xai_standin import rex_xai_available
from tests.cli.test_cli import rex

# ReX's tutorial (docs "Using ReX with a script"), with onnxruntime instead of torch
TUTORIAL_SCRIPT = """
import numpy as np
import onnxruntime as ort
from PIL import Image

from rex_xai.input.input_data import Data
from rex_xai.responsibility.prediction import from_pytorch_tensor

SESSION = ort.InferenceSession({model!r})
model_shape = ["N", 3, 32, 32]


def preprocess(path, shape, device, mode) -> Data:
    img = Image.open(path).convert("RGB")
    data = Data(img, shape, device, mode=mode, process=False)
    data.data = (np.asarray(img.resize((32, 32)), np.float32) / 255.0).transpose(2, 0, 1)[None]
    data.mode = "RGB"
    data.model_shape = shape
    data.model_height = 32
    data.model_width = 32
    data.model_channels = 3
    data.transposed = True
    data.model_order = "first"
    return data


def prediction_function(mutants, target=None, raw=False, binary_threshold=None):
    logits = SESSION.run(None, {{SESSION.get_inputs()[0].name: np.asarray(mutants)}})[0]
    if raw:
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return from_pytorch_tensor(logits)
"""


@pytest.mark.skipif(importlib.util.find_spec("rex_xai") is not None, reason="ReX is installed")
def test_tutorial_script_runs_without_rex(tiny_cnn: Path, tiny_image: Path, tmp_path: Path) -> None:
    script = tmp_path / "tutorial.py"
    script.write_text(TUTORIAL_SCRIPT.format(model=str(tiny_cnn)))
    out = rex(str(tiny_image), "--script", str(script), "--iters", "2", "--seed", "1", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["target"]["class"] in range(10) and summary["stats"]["queries"] > 0


def test_the_stand_in_exists_only_while_a_script_loads() -> None:
    before = set(sys.meta_path)
    with rex_xai_available() as used:
        if used:
            from rex_xai.input.input_data import Data  # type: ignore[import-not-found]

            assert Data([[0.0]], ["N", 1, 1]).data.shape == (1, 1, 1)
    assert set(sys.meta_path) == before
    assert not [name for name in sys.modules if name.split(".")[0] == "rex_xai"] or not used
    if used:
        assert importlib.util.find_spec("rex_xai") is None
