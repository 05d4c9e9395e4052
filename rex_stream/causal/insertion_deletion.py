"""Evaluation of a responsibility map: insertion and deletion curves and their areas."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rex_stream.config import EvaluationConfig, ScoringConfig
from rex_stream.engine.ranking import hide_top, rank_elements, rank_positions, reveal_top
from rex_stream.engine.scheduler import Evaluator
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target, judge


@dataclass(frozen=True)
class Curves:
    """Target-class probability as the ranking is inserted into / deleted from the baseline."""

    insertion: np.ndarray
    deletion: np.ndarray
    insertion_auc: float
    deletion_auc: float
    queries: int


def area_under(curve: np.ndarray) -> float:
    """Area under a curve sampled at equal steps over [0, 1] (trapezoidal rule)."""
    if curve.size < 2:
        return float(curve.mean()) if curve.size else 0.0
    return float(np.sum((curve[1:] + curve[:-1]) / 2.0) / (curve.size - 1))


async def insertion_deletion(
    subject: Subject,
    responsibility: np.ndarray,
    target: Target,
    scheduler: Evaluator,
    evaluation: EvaluationConfig,
    scoring: ScoringConfig,
) -> Curves:
    """Reveal (insertion) or hide (deletion) ``insertion_step`` top-ranked elements at a time.

    Masked elements take the subject's baseline. Curves hold the target's probability at 0,
    step, 2·step, … all elements; with ``normalise_curves`` they are divided by the target's
    confidence on the whole input. AUCs are over the fraction revealed, in [0, 1].
    """
    order = rank_elements(responsibility)
    position = rank_positions(order)
    counts = [*range(0, order.size, evaluation.insertion_step), order.size]
    fills = [reveal_top(subject, position, n) for n in counts]
    fills += [hide_top(subject, position, n) for n in counts]
    verdicts = judge(await scheduler.evaluate(fills), scoring, target.classification)
    probs = verdicts.target_confidences
    insertion, deletion = probs[: len(counts)], probs[len(counts) :]
    if evaluation.normalise_curves and target.confidence > 0:
        insertion = insertion / target.confidence
        deletion = deletion / target.confidence
    return Curves(insertion, deletion, area_under(insertion), area_under(deletion), len(fills))
