"""The passing rule and D-RISE's similarity of a detection target, through the engine's
``judge`` (the hook every phase of the causal method asks)."""

from __future__ import annotations

import numpy as np
import pytest

from rex_stream.config import ScoringConfig
from rex_stream.detection import DetectionRule, choose_targets, detections_in
from rex_stream.engine.verdicts import judge
from rex_stream.errors import ConfigError, InputError

RULE = DetectionRule(target_box=(10, 10, 20, 20), target_class=3, score_threshold=0.5)


def _answer(*rows: list[float]) -> np.ndarray:
    answer = np.zeros((1, 4, 6))
    answer[0, : len(rows)] = rows
    return answer


@pytest.mark.parametrize(
    ("row", "passes", "similarity"),
    [
        ([10, 10, 20, 20, 0.9, 3], True, 0.9),
        ([10, 10, 20, 20, 0.9, 2], False, 0.0),  # another class
        ([10, 10, 20, 20, 0.4, 3], False, 0.4),  # below the score threshold
        ([15, 10, 25, 20, 0.9, 3], False, 0.3),  # IoU 1/3 < 0.5
        ([11, 10, 21, 20, 0.9, 3], True, round(0.9 * 90 / 110, 6)),  # IoU 0.82
    ],
)
def test_a_mutant_passes_when_it_shows_the_target(
    row: list[float], passes: bool, similarity: float
) -> None:
    verdicts = judge(_answer(row), RULE, 3)
    assert bool(verdicts.classes[0] == 3) is passes
    assert verdicts.confidences[0] == pytest.approx(similarity)
    assert verdicts.target_confidences[0] == verdicts.confidences[0]


def test_the_best_detection_gives_the_similarity_and_padding_counts_for_nothing() -> None:
    answer = _answer([10, 10, 20, 20, 0.3, 3], [10, 10, 20, 20, 0.7, 3], [0, 0, 0, 0, 0, 3])
    verdicts = judge(answer, RULE, 3)
    assert verdicts.confidences.tolist() == [0.7]
    assert verdicts.classes.tolist() == [3]
    assert judge(np.zeros((2, 4, 6)), RULE, 3).classes.tolist() == [-1, -1]


def test_classification_scoring_is_unchanged() -> None:
    verdicts = judge(np.array([[0.0, 2.0, 1.0]]), ScoringConfig(), 1)
    assert verdicts.classes.tolist() == [1]


def test_thresholds_outside_zero_one_are_refused() -> None:
    with pytest.raises(ConfigError, match="--iou"):
        DetectionRule(iou_threshold=1.5)


def test_choosing_targets() -> None:
    answer = np.array(
        [
            [0, 0, 10, 10, 0.95, 1],
            [20, 20, 30, 30, 0.9, 2],
            [40, 40, 50, 50, 0.6, 1],
            [60, 60, 70, 70, 0.3, 1],
            [0, 0, 0, 0, 0, 0],
        ],
        dtype=np.float64,
    )
    found = detections_in(answer)
    assert len(found) == 4
    assert [d.index for d in choose_targets(found, score_threshold=0.5)] == [0]
    every = choose_targets(found, score_threshold=0.5, every=True)
    assert [d.index for d in every] == [0, 1, 2]
    assert [d.index for d in choose_targets(found, score_threshold=0.5, label=2)] == [1]
    near = choose_targets(found, score_threshold=0.5, near=(38, 38, 48, 48))
    assert [d.index for d in near] == [2]
    with pytest.raises(InputError, match=r"highest score found: class 1 \(0.950\)"):
        choose_targets(found, score_threshold=0.99)
    with pytest.raises(InputError, match="overlaps no detection; found: class 1"):
        choose_targets(found, score_threshold=0.5, near=(100, 100, 110, 110))
    with pytest.raises(InputError, match="detects nothing"):
        choose_targets([], score_threshold=0.5)
