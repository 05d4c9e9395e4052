"""Global extraction: the smallest top-ranked set of elements the model still classifies as the target."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rex_stream.config import ExtractionConfig, ScoringConfig
from rex_stream.ranking import rank_elements, rank_positions, reveal_top
from rex_stream.scheduler import Scheduler
from rex_stream.search import Target
from rex_stream.subject import Subject
from rex_stream.verdicts import judge


@dataclass(frozen=True)
class Sufficiency:
    """A sufficient explanation: a spatial mask and the model's confidence with only it shown."""

    mask: np.ndarray
    confidence: float
    queries: int

    @property
    def area(self) -> float:
        """Fraction of the input's spatial elements in the explanation."""
        return float(self.mask.mean()) if self.mask.size else 0.0


async def extract_global(
    subject: Subject,
    responsibility: np.ndarray,
    target: Target,
    scheduler: Scheduler,
    extraction: ExtractionConfig,
    scoring: ScoringConfig,
) -> Sufficiency:
    """Reveal the highest-ranked elements ``chunk_size`` at a time, in batches, and return the
    first candidate classified as the target with enough confidence.

    Every candidate is evaluated in order, the last partial batch included (ReX skips it).
    If no candidate passes, the whole input is the explanation.
    """
    order = rank_elements(responsibility)
    position = rank_positions(order)
    size = order.size
    counts = list(range(extraction.chunk_size, size, extraction.chunk_size)) + [size]
    threshold = target.confidence * extraction.minimum_confidence_threshold
    round_size = scheduler.max_batch
    queries = 0
    for first in range(0, len(counts), round_size):
        batch = counts[first : first + round_size]
        scores = await scheduler.evaluate([reveal_top(subject, position, n) for n in batch])
        verdicts = judge(scores, scoring, target.classification)
        queries += len(batch)
        hits = np.flatnonzero(
            (verdicts.classes == target.classification) & (verdicts.confidences >= threshold)
        )
        if hits.size:
            n = batch[int(hits[0])]
            mask = (position < n).reshape(responsibility.shape)
            return Sufficiency(mask, float(verdicts.confidences[hits[0]]), queries)
    return Sufficiency(np.ones(responsibility.shape, bool), target.confidence, queries)
