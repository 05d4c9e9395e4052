"""Complete explanations (--complete) on a real onnxruntime session: sufficient, necessary,
at about the original confidence, containing the necessary set; stored and in the database."""

from __future__ import annotations

import sqlite3
import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import zarr

from rex_stream import explain_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.rex_compat.database import append_explanation
from tests.onnx_models import planted_image


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def test_complete_is_sufficient_necessary_and_at_the_original_confidence(
    patch_model: Path, tmp_path: Path
) -> None:
    session = ort.InferenceSession(str(patch_model))
    backend = PythonBackend(lambda b: session.run(None, {"input": b})[0], (1, 24, 24))
    store = tmp_path / "complete.zarr"
    result = explain_sync(
        planted_image(),
        backend,
        store=store,
        iters=8,
        seed=4,
        min_box_size=4,
        strategy="contrastive",
        complete=True,
        chunk_size=2,
    )
    complete = result.complete
    assert complete.reached
    image = planted_image()[0]

    def probabilities(mask: np.ndarray) -> np.ndarray:
        shown = np.where(mask, image, 0.0)[None, None].astype(np.float32)
        return _softmax(session.run(None, {"input": shown})[0][0])

    mask = result.mask
    assert mask is not None and (mask >= complete.necessary.mask).all()
    shown = probabilities(mask)
    assert shown.argmax() == 1
    assert shown[1] >= round(result.target.confidence, 2) - 0.005
    assert probabilities(~mask).argmax() == 0  # necessary: without it, not the target
    necessary = complete.necessary.mask
    assert probabilities(necessary).argmax() == 1 and probabilities(~necessary).argmax() == 0
    assert mask.sum() > necessary.sum()  # the necessary set alone was below p0
    assert complete.inverse_classification == 0
    facts = result.summary()["complete"]
    assert facts["confidence"] == pytest.approx(shown[1], abs=1e-5)
    group = zarr.open_group(str(store), mode="r")[result.subject.name]
    assert np.array_equal(np.asarray(group["necessary"][:]).astype(bool), necessary)
    database = tmp_path / "rex.db"
    append_explanation(database, result)
    row = (
        sqlite3.connect(database)
        .execute("SELECT contrastive_mask, complete_mask, inverse_classification FROM rex")
        .fetchone()
    )
    stored = np.frombuffer(zlib.decompress(row[0]), np.bool_).reshape(1, 24, 24)[0]
    added = np.frombuffer(zlib.decompress(row[1]), np.bool_).reshape(1, 24, 24)[0]
    assert np.array_equal(stored, necessary), (stored.sum(), necessary.sum())
    assert np.array_equal(added, mask & ~necessary), (added.sum(), (mask & ~necessary).sum())
    assert row[2] == 0


def test_complete_on_the_command_line(patch_model: Path, tmp_path: Path) -> None:
    import json

    from PIL import Image

    from tests.cli.test_cli import rex

    picture = tmp_path / "planted.png"
    Image.fromarray((planted_image()[0] * 255).round().astype(np.uint8)).save(picture)
    (tmp_path / "rex.toml").write_text(
        "[causal]\nmin_box_size = 4\n[explanation]\nchunk_size = 2\n"
    )
    args = [str(picture), "--model", str(patch_model), "--iters", "6", "--seed", "4", "--complete"]
    out = rex(*args, "--json", "--output", "complete.png", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)["complete"]
    assert facts["reached_original_confidence"] and facts["inverse_classification"] == 0
    assert (tmp_path / "complete.png").stat().st_size > 0
    human = rex(*args, cwd=tmp_path)
    assert "complete:" in human.stdout and "necessary part" in human.stdout
