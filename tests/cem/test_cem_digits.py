"""CEM on scikit-learn's 8×8 digits (the MLP in rex_stream/data/models/digits-mlp.onnx):
pertinent positives keep the digit, their pixels beat random present pixels, negatives flip it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from rex_stream import explain_cem_sync
from rex_stream.cem import CemConfig

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"
DIGITS = MODELS / "digits-mlp.onnx"


def held_out_digits(count: int) -> np.ndarray:
    """The first ``count`` test digits as model inputs (N, 1, 8, 8) in [0, 1]."""
    return (np.load(MODELS / "digits-test.npy")[:count, None] / 16.0).astype(np.float32)


def classify(batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(DIGITS), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": batch.astype(np.float32)})[0].argmax(axis=1)


def test_digit_pertinent_positives_and_negatives() -> None:
    digits = held_out_digits(8)
    positives = explain_cem_sync(list(digits), str(DIGITS), CemConfig(steps=120))
    assert all(r.found for r in positives)
    targets = np.array([r.target.classification for r in positives])
    np.testing.assert_array_equal(targets, classify(digits))
    assert (classify(np.stack([r.solution for r in positives])) == targets).all()
    rng = np.random.default_rng(0)
    top, random = [], []
    for result, digit in zip(positives, digits):
        k = max(1, int((result.values > 0.05).sum()))
        keep = np.zeros(64, bool)
        keep[result.top_regions(k)] = True
        present = np.flatnonzero(digit.reshape(-1) > 0)
        other = np.zeros(64, bool)
        other[rng.choice(present, min(k, present.size), replace=False)] = True
        top.append(np.where(keep.reshape(1, 8, 8), digit, 0.0))
        random.append(np.where(other.reshape(1, 8, 8), digit, 0.0))
    kept, random_kept = (float(np.mean(classify(np.stack(t)) == targets)) for t in (top, random))
    print(
        f"digits: PP pixels alone keep the class {kept:.2f}, random present ones {random_kept:.2f}"
    )
    assert kept >= random_kept + 0.3
    negatives = explain_cem_sync(list(digits), str(DIGITS), CemConfig(kind="pn", steps=120))
    assert all(r.found for r in negatives)
    assert (classify(np.stack([r.solution for r in negatives])) != targets).all()
