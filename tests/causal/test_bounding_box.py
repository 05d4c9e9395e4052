"""ReX 0.4.1's ``use_bounding_box``: the search starts from one box of the picture and
everything outside it stays masked. The box is given (``--bounding-box``, ``[causal]
bounding_box``) or, with ``--script``, taken from the script's prediction as ReX does; a
classifier backend without a box is a one-line error. Real onnxruntime sessions."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from rex_stream import explain_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.errors import ConfigError, InputError
from rex_stream.rex_compat.config_file import load_config
from tests.cli.test_cli import rex
from tests.onnx_models import PATCH, planted_image

IMAGE = planted_image()
BOX = (12, 4, 22, 14)  # x0, y0, x1, y1 around the patch (rows 6:12, cols 14:20)


class RecordingBackend(PythonBackend):
    """The patch model; keeps every mutant it scores (all-zero rows are the adapter's probes)."""

    def __init__(self, model: Path) -> None:
        session = ort.InferenceSession(str(model))
        self.rows: list[np.ndarray] = []

        def score(batch: np.ndarray) -> np.ndarray:
            self.rows.extend(batch[batch.reshape(len(batch), -1).any(axis=1)].copy())
            return session.run(None, {"input": batch})[0]

        super().__init__(score, (1, 24, 24))


def test_search_stays_inside_the_box(patch_model: Path) -> None:
    backend = RecordingBackend(patch_model)
    result = explain_sync(
        IMAGE,
        backend,
        iters=3,
        seed=2,
        min_box_size=4,
        bounding_box=BOX,
        responsibility_style="additive",
        extract=False,
    )
    inside = np.zeros((24, 24), bool)
    inside[BOX[1] : BOX[3], BOX[0] : BOX[2]] = True
    # after the target (the baseline check's all-masked row is all zeros: not recorded)
    mutants = np.stack(backend.rows[1:])[:, 0]
    assert len(mutants) == result.stats.passing + result.stats.failing > 14
    assert np.all(mutants[:, ~inside] == 0.0)  # outside the box: always the mask value
    assert np.any(mutants[:, inside] != 0.0, axis=1).all()
    assert np.all(result.responsibility[~inside] == 0.0)
    assert result.responsibility[PATCH].min() > 0.0
    whole = explain_sync(
        IMAGE,
        RecordingBackend(patch_model),
        iters=3,
        seed=2,
        min_box_size=4,
        responsibility_style="additive",
        extract=False,
    )
    assert np.any(whole.responsibility[~inside] != 0.0)  # without the box it spreads further


def test_bad_boxes_and_missing_boxes_are_one_line(
    patch_model: Path, tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="reaches past the input's 24 × 24 pixels"):
        explain_sync(IMAGE, RecordingBackend(patch_model), iters=1, bounding_box=(0, 0, 30, 10))
    with pytest.raises(ConfigError, match="x0 < x1"):
        explain_sync(IMAGE, RecordingBackend(patch_model), iters=1, bounding_box=(5, 0, 5, 10))
    (tmp_path / "rex.toml").write_text("[causal]\nuse_bounding_box = true\n")
    out = rex(str(tiny_image), "--model", str(tiny_cnn), "--iters", "1", cwd=tmp_path)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2 and "settings from" in lines[0]
    assert "use_bounding_box needs a box" in lines[1] and "--bounding-box" in lines[1]
    bad = rex(str(tiny_image), "--model", str(tiny_cnn), "--bounding-box", "1,2,3", cwd=tmp_path)
    assert "expected four whole numbers" in bad.stderr and bad.returncode != 0


def test_rex_toml_box_and_multi_class(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "rex.toml"
    path.write_text(
        "[causal]\nuse_bounding_box = true\nbounding_box = [1, 2, 30, 40]\n"
        "[explanation]\nmulti_class = true\n"
    )
    with caplog.at_level(logging.WARNING, logger="rex_stream.rex_compat.config_file"):
        search = load_config(path).search
    assert search.use_bounding_box and search.bounding_box == (1, 2, 30, 40)
    (message,) = [r.getMessage() for r in caplog.records]
    assert "multi_class is accepted, but ReX 0.4.1 reads it and never uses it" in message


SCRIPT = """
import numpy as np
import onnxruntime as ort

SESSION = ort.InferenceSession({model!r})


class Prediction:
    def __init__(self, classification, confidence, bounding_box):
        self.classification = classification
        self.confidence = confidence
        self.bounding_box = bounding_box


def model_shape():
    return ["N", 1, 24, 24]


def preprocess(path, shape, device, mode):
    return np.load(path)


def prediction_function(mutants, target=None, raw=False, binary_threshold=None):
    batch = np.asarray(mutants, dtype=np.float32)
    logits = SESSION.run(None, {{"input": batch}})[0]
    rows = np.exp(logits - logits.max(axis=1, keepdims=True))
    rows /= rows.sum(axis=1, keepdims=True)
    if raw:
        return rows
    # a detector: the box around what it found (the patch), in x0, y0, x1, y1
    return [Prediction(int(r.argmax()), float(r.max()), np.array({box})) for r in rows]
"""


def test_script_prediction_gives_the_box(patch_model: Path, tmp_path: Path) -> None:
    """As in ReX: with use_bounding_box, the script's prediction of the input gives the box."""
    script = tmp_path / "detector.py"
    script.write_text(SCRIPT.format(model=str(patch_model), box=list(BOX)))
    np.save(tmp_path / "input.npy", IMAGE)
    (tmp_path / "rex.toml").write_text("[causal]\nuse_bounding_box = true\n")
    out = rex(
        str(tmp_path / "input.npy"),
        "--script",
        str(script),
        "--iters",
        "2",
        "--seed",
        "1",
        "-n",
        "-v",
        "--json",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "bounding_box" in out.stderr and "(12, 4, 22, 14)" in out.stderr
