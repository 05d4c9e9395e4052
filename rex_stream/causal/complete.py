"""Complete explanations (ReX 0.4.1's ``--complete``): sufficient, necessary, and with about
the model's original confidence.

ReX starts from the sufficient-and-necessary (contrastive) set and adds elements from the
*bottom* of the ranking until the model's confidence is back at the original one (to two
decimals). Here the set grows from the contrastive one along the ranking's top instead — the
most responsible elements first — so the complete explanation is the smallest top-ranked set
that is shown alone classified as the target at ≥ the original confidence (rounded to two
decimals, as ReX compares) and whose removal changes the class. The probes are the global
search's, paired with their complements, so they do not depend on batch size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from rex_stream.causal.extraction import Sufficiency, extract_contrastive, first_sufficient
from rex_stream.config import ExtractionConfig, ScoringConfig
from rex_stream.engine.ranking import hide_top, rank_elements, rank_positions, reveal_top
from rex_stream.engine.scheduler import Evaluator
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target, judge


@dataclass(frozen=True)
class CompleteExplanation:
    """The complete explanation and what ReX records beside it."""

    complete: Sufficiency
    necessary: Sufficiency
    reached: bool  # whether a set at about the original confidence was found
    inverse_classification: int  # the class of the input without the necessary set
    inverse_confidence: float
    added_classification: int  # the class of the elements added to the necessary set, alone
    added_confidence: float

    @property
    def added(self) -> np.ndarray:
        """The elements the complete explanation adds to the necessary one."""
        return self.complete.mask & ~self.necessary.mask

    def facts(self) -> dict[str, object]:
        """The scalars, for summaries."""
        return {
            "reached_original_confidence": self.reached,
            "area": self.complete.area,
            "confidence": self.complete.confidence,
            "necessary_area": self.necessary.area,
            "necessary_confidence": self.necessary.confidence,
            "inverse_classification": self.inverse_classification,
            "inverse_confidence": self.inverse_confidence,
            "added_area": float(self.added.mean()) if self.added.size else 0.0,
            "added_classification": self.added_classification,
            "added_confidence": self.added_confidence,
        }


async def extract_complete(
    subject: Subject,
    responsibility: np.ndarray,
    target: Target,
    scheduler: Evaluator,
    extraction: ExtractionConfig,
    scoring: ScoringConfig,
) -> CompleteExplanation:
    """The necessary (contrastive) explanation, then the smallest top-ranked set containing
    it that is necessary and sufficient at about the original confidence."""
    necessary = await extract_contrastive(
        subject, responsibility, target, scheduler, extraction, scoring
    )
    position = rank_positions(rank_elements(responsibility))
    start = int(necessary.mask.sum())
    size = position.size
    counts = [*range(max(start, 1), size, extraction.chunk_size), size]
    wanted = max(0.0, round(target.confidence, 2) - 0.005)
    fraction = min(1.0, wanted / target.confidence) if target.confidence > 0 else 0.0
    found, confidence, queries = await first_sufficient(
        len(counts),
        lambda i: reveal_top(subject, position, counts[i]),
        target,
        scheduler,
        replace(extraction, minimum_confidence_threshold=fraction),
        scoring,
        counter_for=lambda i: hide_top(subject, position, counts[i]),
    )
    reached = found is not None
    if found is None:
        complete = Sufficiency(necessary.mask, necessary.confidence, queries)
    else:
        mask = (position < counts[found]).reshape(responsibility.shape) | necessary.mask
        complete = Sufficiency(mask, confidence, queries)
    added = complete.mask & ~necessary.mask
    verdicts = judge(
        await scheduler.evaluate(
            [
                lambda out: subject.fill_mask(out, ~necessary.mask),
                lambda out: subject.fill_mask(out, added),
            ]
        ),
        scoring,
        target.classification,
    )
    return CompleteExplanation(
        complete=replace(complete, queries=complete.queries + 2),
        necessary=necessary,
        reached=reached,
        inverse_classification=int(verdicts.classes[0]),
        inverse_confidence=float(verdicts.confidences[0]),
        added_classification=int(verdicts.classes[1]),
        added_confidence=float(verdicts.confidences[1]),
    )
