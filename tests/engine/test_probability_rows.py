"""Item 1 of issue 27: a model that answers probabilities, read as logits (the default), gets a
second softmax; the run must say so in one line, and stay silent when the rows are logits or
when ``--scores probabilities`` is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rex_stream.config import ScoreKind, ScoringConfig
from rex_stream.engine.verdicts import probabilities_read_as_logits
from tests.cli.test_cli import rex


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "small.npy"
    np.save(path, np.random.default_rng(1).random((3, 16, 16)).astype(np.float32))
    return path


def _run(photo: Path, model: str, *extra: str):
    return rex(
        str(photo), "--backend", f"python:tests.runs.trust_models:{model}",
        "--input-shape", "3,16,16", "--iters", "2", "--seed", "1", "-n", "-q", *extra,
    )  # fmt: skip


def test_probability_rows_read_as_logits_are_reported(photo: Path) -> None:
    out = _run(photo, "probabilities")
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if "look like probabilities" in line]
    assert len(lines) == 1, out.stderr
    assert "--scores probabilities" in lines[0]


def test_logits_and_declared_probabilities_are_quiet(photo: Path) -> None:
    for out in (_run(photo, "logits"), _run(photo, "probabilities", "--scores", "probabilities")):
        assert out.returncode == 0, out.stderr
        assert "look like probabilities" not in out.stderr


def test_the_check_itself() -> None:
    logits = ScoringConfig()
    probs = np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    assert probabilities_read_as_logits(probs, logits) is not None
    assert probabilities_read_as_logits(probs * 0.5, logits) is None  # rows sum to 0.5
    assert probabilities_read_as_logits(probs - 0.3, logits) is None  # negative: logits
    declared = ScoringConfig(scores=ScoreKind.PROBABILITIES)
    assert probabilities_read_as_logits(probs, declared) is None
    assert probabilities_read_as_logits(np.array([[0.3], [0.9]]), logits) is None  # binary
