"""Quantus' calling convention: ``x_batch``, ``y_batch``, ``a_batch``, ``s_batch`` as arrays
or lists (maps with a leading axis of 1), scored exactly as rex-stream's own arguments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rex_stream import ConfigError, ExplainConfig
from rex_stream.api.synchronous import evaluate_sync

METRICS = "sparseness,pointing-game,pixel-flipping:features_in_step=64"


@pytest.fixture
def batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.random((2, 3, 32, 32)).astype(np.float32)
    a = rng.random((2, 1, 32, 32))
    s = np.zeros((2, 1, 32, 32), bool)
    s[:, :, 4:12, 4:12] = True
    return x, a, s


def _scores(evaluation, name: str) -> list[list[float]]:
    labels = [c.label for c in evaluation.metrics]
    return [
        [evaluation.score(name, label, i) for label in labels]
        for i in range(len(evaluation.inputs))
    ]


def test_quantus_batches_give_rex_streams_numbers(tiny_cnn: Path, batch: tuple) -> None:
    x, a, s = batch
    y = [3, 7]
    quantus = evaluate_sync(
        model=str(tiny_cnn), x_batch=x, y_batch=y, a_batch=a, s_batch=s, metrics=METRICS
    )
    as_lists = evaluate_sync(
        model=str(tiny_cnn),
        x_batch=list(x),
        y_batch=np.array(y, dtype=float),
        a_batch=list(a),
        s_batch=list(s),
        metrics=METRICS,
    )
    scores = _scores(quantus, "a_batch")
    assert scores == _scores(as_lists, "a_batch")
    assert [q.target for q in quantus.inputs] == y
    # each input got its own map, mask and target: rex-stream's spelling, one input at a
    # time, gives the very same numbers
    for i in range(2):
        config = ExplainConfig().with_overrides(target=y[i])
        one = evaluate_sync(x[i], str(tiny_cnn), {"a_batch": a[i, 0]}, METRICS, mask=s[i, 0],
                            config=config)  # fmt: skip
        assert _scores(one, "a_batch")[0] == scores[i]
    swapped = evaluate_sync(
        model=str(tiny_cnn), x_batch=x, y_batch=y, a_batch=a[::-1], s_batch=s, metrics=METRICS
    )
    assert _scores(swapped, "a_batch") != scores


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ({"a_batch": "a.npy"}, "expected an array with a batch axis"),
        ({"y_batch": [1]}, "y_batch has 1 targets for 2 inputs"),
        ({"y_batch": [0.5, 1]}, "one class index per input"),
        ({"a_batch": np.zeros((3, 1, 32, 32))}, "a_batch has 3 maps for 2 inputs"),
    ],
)
def test_quantus_batch_mistakes_are_one_line(
    tiny_cnn: Path, batch: tuple, given: dict, needle: str
) -> None:
    x, a, _ = batch
    arguments = {"model": str(tiny_cnn), "x_batch": x, "a_batch": a, "metrics": "sparseness"}
    with pytest.raises(ConfigError, match=needle) as caught:
        evaluate_sync(**{**arguments, **given})
    assert len(str(caught.value).splitlines()) == 1 and "[[" not in str(caught.value)
