"""Global extraction: the smallest top-ranked set of elements still classified as the target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rex_stream.config import ExtractionConfig, ScoringConfig
from rex_stream.ranking import rank_elements, rank_positions, reveal_top
from rex_stream.scheduler import Scheduler
from rex_stream.search import Target
from rex_stream.subject import Subject
from rex_stream.verdicts import judge

#: Above this many spatial elements, global extraction ranks distinct responsibility levels
#: instead of single elements: an element ranking of a 512³ volume takes several GiB of
#: int64 and a chunk of 10 elements would mean millions of queries.
LARGE_INPUT_ELEMENTS = 1 << 22

#: The most candidates a level-wise extraction evaluates.
MAX_LEVEL_CANDIDATES = 1024


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
    if responsibility.size > LARGE_INPUT_ELEMENTS:
        return await extract_by_levels(
            subject, responsibility, target, scheduler, extraction, scoring
        )
    order = rank_elements(responsibility)
    position = rank_positions(order)
    size = order.size
    counts = [*range(extraction.chunk_size, size, extraction.chunk_size), size]
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


def responsibility_levels(
    responsibility: np.ndarray, chunk_elements: int = 1 << 22
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a map, highest first, and how many elements are ≥ each of them.

    Computed slab by slab, so no input-sized temporary is made. A map built from box ledgers
    is piecewise constant, so it has few distinct values (one per cell of its boxes at most).
    """
    flat = responsibility.reshape(-1)
    chunks = range(0, flat.size, chunk_elements)
    levels = np.unique(
        np.concatenate([np.unique(flat[i : i + chunk_elements]) for i in chunks] or [[]])
    )[::-1]
    counts = np.zeros(levels.size, np.int64)
    ascending = levels[::-1]
    for i in chunks:
        slot = np.searchsorted(ascending, flat[i : i + chunk_elements])
        counts += np.bincount(slot, minlength=levels.size)[::-1]
    return levels, np.cumsum(counts)


async def extract_by_levels(
    subject: Subject,
    responsibility: np.ndarray,
    target: Target,
    scheduler: Scheduler,
    extraction: ExtractionConfig,
    scoring: ScoringConfig,
) -> Sufficiency:
    """Global extraction for large inputs: reveal every element ≥ a responsibility level,
    for levels from the highest down, and keep the first candidate the model classifies as
    the target. Ties are revealed together; candidates are at least ``chunk_size`` elements
    apart and at most :data:`MAX_LEVEL_CANDIDATES` (evenly spread over the element count).
    """
    levels, revealed = responsibility_levels(responsibility)
    chosen: list[int] = []
    last = 0
    for index, count in enumerate(revealed):
        if count - last >= extraction.chunk_size or index == levels.size - 1:
            chosen.append(index)
            last = int(count)
    if len(chosen) > MAX_LEVEL_CANDIDATES:
        marks = np.linspace(0, revealed[-1], MAX_LEVEL_CANDIDATES + 1)[1:]
        picked = np.searchsorted(revealed[chosen], marks)
        chosen = sorted({chosen[min(int(p), len(chosen) - 1)] for p in picked})
    threshold = target.confidence * extraction.minimum_confidence_threshold
    shape = responsibility.shape
    queries = 0

    def reveal(level: float) -> Callable[[np.ndarray], None]:
        def fill(out: np.ndarray) -> None:
            subject.fill_mask(out, (responsibility >= level).reshape(shape))

        return fill

    round_size = scheduler.max_batch
    for first in range(0, len(chosen), round_size):
        batch = [float(levels[i]) for i in chosen[first : first + round_size]]
        scores = await scheduler.evaluate([reveal(level) for level in batch])
        verdicts = judge(scores, scoring, target.classification)
        queries += len(batch)
        hits = np.flatnonzero(
            (verdicts.classes == target.classification) & (verdicts.confidences >= threshold)
        )
        if hits.size:
            mask = responsibility >= batch[int(hits[0])]
            return Sufficiency(mask, float(verdicts.confidences[hits[0]]), queries)
    return Sufficiency(np.ones(shape, bool), target.confidence, queries)
