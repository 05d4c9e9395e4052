"""CEM against models whose probabilities saturate to exactly 0/1, where the hinge is flat
around the input: the chain's smoothing radius grows until the probes see a slope."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import onnxruntime as ort

from rex_stream import explain_cem_sync
from rex_stream.adapters.python import PythonBackend
from rex_stream.cem import CemConfig
from rex_stream.cem.chain import _next_smoothing, margins
from rex_stream.config import ExplainConfig, ScoreKind, ScoringConfig
from tests.cem.test_cem import TABULAR, classify, held_out_rows, tabular_config
from tests.cem.test_cem_digits import DIGITS, held_out_digits
from tests.cem.test_cem_digits import classify as classify_digits


def probabilities(model: object, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: batch.astype(np.float32)})[0]


def test_pertinent_negatives_of_rows_the_model_saturates() -> None:
    """Held-out rows the float32 breast-cancer model scores as exactly 1.0: every probe at the
    configured radius scores the same, so a fixed-radius chain never moves."""
    rows = held_out_rows(10)
    saturated = [rows[1], rows[9]]
    assert (probabilities(TABULAR, np.stack(saturated)).max(axis=1) == 1.0).all()
    results = explain_cem_sync(saturated, str(TABULAR), CemConfig(kind="pn"), tabular_config())
    for result, row in zip(results, saturated):
        assert result.found
        assert classify(TABULAR, result.solution) != result.target.classification
        assert classify(TABULAR, row) == result.target.classification


def sharpened(scale: float) -> Callable[[np.ndarray], np.ndarray]:
    """The digits MLP behind a float32 softmax of its log-probabilities × ``scale``: the same
    classes, probabilities saturated to exactly 0/1 (as an HTTP service's often are)."""
    session = ort.InferenceSession(str(DIGITS), providers=["CPUExecutionProvider"])

    def scores(batch: np.ndarray) -> np.ndarray:
        p = session.run(None, {"input": batch.astype(np.float32)})[0].astype(np.float32)
        z = np.log(np.clip(p, 1e-12, None)) * np.float32(scale)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    return scores


def test_saturating_softmax_backend_pertinent_negatives_and_positives() -> None:
    digits = held_out_digits(8)
    scores = sharpened(30.0)
    assert (scores(digits).max(axis=1) == 1.0).all()  # every input exactly saturated
    backend = PythonBackend(scores, (1, 8, 8), name="digits-sharpened")
    config = ExplainConfig()
    config = replace(config, scoring=replace(config.scoring, scores=ScoreKind.PROBABILITIES))
    targets = classify_digits(digits)
    negatives = explain_cem_sync(list(digits), backend, CemConfig(kind="pn", steps=120), config)
    assert all(r.found for r in negatives)
    assert (classify_digits(np.stack([r.solution for r in negatives])) != targets).all()
    positives = explain_cem_sync(list(digits), backend, CemConfig(steps=120), config)
    assert all(r.found for r in positives)
    assert (classify_digits(np.stack([r.solution for r in positives])) == targets).all()


def test_logit_margins_do_not_saturate() -> None:
    """Margins from logits are logit differences however large (no probability underflow)."""
    logits = np.array([[300.0, 0.0, -5.0], [1.0, 2.0, 0.5]])
    margin, classes = margins(logits, ScoringConfig(), 0)
    np.testing.assert_allclose(margin, [300.0, -1.0])
    assert classes.tolist() == [0, 1]
    one_logit, _ = margins(np.array([[250.5], [-3.25]]), ScoringConfig(), 1)
    np.testing.assert_allclose(one_logit, [250.5, -3.25])
    saturated = np.array([[1.0, 0.0]], np.float32)
    scoring = ScoringConfig(scores=ScoreKind.PROBABILITIES)
    assert np.isfinite(margins(saturated, scoring, 0)[0]).all()


def test_the_radius_grows_only_while_the_hinge_is_flat_and_unmet() -> None:
    flat, sloped = np.zeros(4), np.array([0.0, 0.3, -0.1, 0.0])
    unmet, met = np.full(8, 3.0), np.zeros(8)
    assert _next_smoothing(0.05, 0.05, 5.0, flat, unmet) == 0.1
    assert _next_smoothing(4.0, 0.05, 5.0, flat, unmet) == 5.0  # at most the box diagonal
    assert _next_smoothing(0.05, 0.05, 5.0, flat, met) == 0.05  # flat because it is done
    assert _next_smoothing(0.8, 0.05, 5.0, sloped, unmet) == 0.4  # back toward μ
    assert _next_smoothing(0.05, 0.05, 5.0, sloped, unmet) == 0.05
