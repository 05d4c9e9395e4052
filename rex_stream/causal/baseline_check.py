"""The baseline check ReX added after 0.4.1 (PR #111): warn when the mask value alone — the
input with every element masked — is already classified as the target, since then every
mutant "passes" and the map and explanations mean little."""

from __future__ import annotations

import logging

from rex_stream.config import ScoringConfig
from rex_stream.engine.scheduler import Evaluator
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target, judge

logger = logging.getLogger(__name__)


async def check_baseline(
    subject: Subject, evaluator: Evaluator, scoring: ScoringConfig, target: Target
) -> list[str]:
    """One query: the fully masked input. Returns the warning given, if any."""
    scores = await evaluator.evaluate([lambda out: subject.fill_boxes(out, ())])
    verdicts = judge(scores, scoring, target.classification)
    if int(verdicts.classes[0]) != target.classification:
        return []
    message = (
        f"the mask value alone (every element masked) is classified as the target class "
        f"{target.classification} (confidence {float(verdicts.confidences[0]):.2f}): mutants "
        "pass whatever they show, so the map says little; choose another mask value"
    )
    logger.warning(message)
    return [message]
