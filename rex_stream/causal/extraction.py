"""Extraction: turn a responsibility map into an explanation the model confirms.

Strategies: *global* (the smallest top-ranked set still classified as the target, found by a
``bracket`` or ``linear`` search over growing candidates), *spatial* (the smallest ball around
the peak, then global inside it) and *contrastive* (sufficient and necessary).

**The determinism rule** (every strategy, ``multi`` included when it lands, must keep it): the
probes a strategy sends are a pure function of the map, the settings (``ExtractionConfig``,
``ScoringConfig``, the seed) and the verdicts of the probes already sent. A strategy

- never reads the batch size (``Evaluator.max_batch``), ``max_inflight``, the backend's
  preferred batch or anything else about how probes are carried;
- sends a fixed number of probes per round (:data:`PROBES_PER_ROUND`, or a count derived from
  the settings only), and decides the next round only once every verdict of the current one
  is back, so completion order cannot matter;
- breaks ties in a fixed order (lowest candidate index first) and draws anything random
  from a generator seeded from the settings and the input only.

The scheduler may split or coalesce a round however it likes; with a backend that scores a
row the same whatever batch it rides in, the explanation is then the same for every batch
size, concurrency and backend (``tests/causal/test_extraction_determinism.py`` holds this).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from rex_stream.config import ExtractionConfig, ScoringConfig
from rex_stream.engine.ranking import hide_top, rank_elements, rank_positions, reveal_top
from rex_stream.engine.scheduler import Evaluator, Fill
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target, judge

#: Above this many spatial elements, global extraction ranks distinct responsibility levels
#: instead of single elements: an element ranking of a 512³ volume takes several GiB of
#: int64 and a chunk of 10 elements would mean millions of queries.
LARGE_INPUT_ELEMENTS = 1 << 22

#: Candidates probed per round by every extraction search. A constant, not the batch size:
#: which candidates are probed must not depend on how the probes are batched.
PROBES_PER_ROUND = 16

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
    scheduler: Evaluator,
    extraction: ExtractionConfig,
    scoring: ScoringConfig,
) -> Sufficiency:
    """Reveal the highest-ranked elements ``chunk_size`` at a time and return the first
    candidate classified as the target with enough confidence (see :func:`first_sufficient`).

    If no candidate passes, the whole input is the explanation.
    """
    if responsibility.size > LARGE_INPUT_ELEMENTS:
        return await extract_by_levels(
            subject, responsibility, target, scheduler, extraction, scoring
        )
    mask, confidence, queries = await _first_top_set(
        subject, responsibility, target, scheduler, extraction, scoring, necessary=False
    )
    if mask is None:
        return Sufficiency(np.ones(responsibility.shape, bool), target.confidence, queries)
    return Sufficiency(mask, confidence, queries)


async def _first_top_set(
    subject: Subject,
    responsibility: np.ndarray,
    target: Target,
    scheduler: Evaluator,
    extraction: ExtractionConfig,
    scoring: ScoringConfig,
    *,
    necessary: bool,
) -> tuple[np.ndarray | None, float, int]:
    """The first set of the top-ranked elements, grown ``chunk_size`` at a time, that is
    sufficient (and, with ``necessary``, whose removal changes the class): (mask or None,
    confidence, queries)."""
    position = rank_positions(rank_elements(responsibility))
    counts = [*range(extraction.chunk_size, position.size, extraction.chunk_size), position.size]
    found, confidence, queries = await first_sufficient(
        len(counts),
        lambda i: reveal_top(subject, position, counts[i]),
        target,
        scheduler,
        extraction,
        scoring,
        counter_for=(lambda i: hide_top(subject, position, counts[i])) if necessary else None,
    )
    if found is None:
        return None, confidence, queries
    return (position < counts[found]).reshape(responsibility.shape), confidence, queries


async def first_sufficient(
    count: int,
    fill_for: Callable[[int], Fill],
    target: Target,
    scheduler: Evaluator,
    extraction: ExtractionConfig,
    scoring: ScoringConfig,
    counter_for: Callable[[int], Fill] | None = None,
) -> tuple[int | None, float, int]:
    """The first of ``count`` growing candidates the model classifies as the target (and,
    with ``counter_for``, whose counterpart — the input without the candidate — it does not).

    Both searches probe :data:`PROBES_PER_ROUND` candidates a round, whatever the batch size.
    ``linear`` evaluates the candidates in order, the last partial round included (ReX skips
    it), and returns the first passing one. ``bracket`` probes them coarse to fine: a geometric
    sweep, then evenly spaced probes inside the bracket between the last failing and the first
    passing probe, until the bracket closes — the same candidate as ``linear`` whenever
    sufficiency grows with the revealed set, for a few dozen queries instead of hundreds.
    Returns (index or None, its confidence, queries spent).
    """
    threshold = target.confidence * extraction.minimum_confidence_threshold
    verdicts_of: dict[int, tuple[bool, float]] = {}
    spent = 0

    async def probe(indices: list[int]) -> None:
        nonlocal spent
        fills = [fill_for(i) for i in indices]
        if counter_for is not None:
            fills += [counter_for(i) for i in indices]
        verdicts = judge(await scheduler.evaluate(fills), scoring, target.classification)
        spent += len(fills)
        shown = slice(0, len(indices))
        passes = (verdicts.classes[shown] == target.classification) & (
            verdicts.confidences[shown] >= threshold
        )
        if counter_for is not None:
            passes &= verdicts.classes[len(indices) :] != target.classification
        for i, ok, confidence in zip(indices, passes, verdicts.confidences[shown]):
            verdicts_of[i] = (bool(ok), float(confidence))

    for indices in _rounds(count, extraction.search, verdicts_of):
        await probe(indices)
    passing = [i for i, (ok, _) in verdicts_of.items() if ok]
    if not passing:
        return None, 0.0, spent
    found = min(passing)
    return found, verdicts_of[found][1], spent


def _rounds(
    count: int, search: str, verdicts_of: dict[int, tuple[bool, float]]
) -> Iterator[list[int]]:
    """The candidate indices to probe, round by round, for ``linear`` or ``bracket`` search.

    Each round is decided from the verdicts of the rounds before it only (``verdicts_of`` is
    filled in by the caller between rounds); the search ends when this generator does.
    """
    if search == "linear":
        for first in range(0, count, PROBES_PER_ROUND):
            yield list(range(first, min(first + PROBES_PER_ROUND, count)))
            if any(verdicts_of[i][0] for i in range(first, min(first + PROBES_PER_ROUND, count))):
                return
        return
    sweep = np.geomspace(1, count, min(PROBES_PER_ROUND, count)).round().astype(int) - 1
    yield [int(i) for i in np.unique(sweep)]
    while True:
        high = min((i for i, (ok, _) in verdicts_of.items() if ok), default=count)
        low = max((i for i, (ok, _) in verdicts_of.items() if not ok and i < high), default=-1)
        if high - low <= 1:
            return
        inside = np.linspace(low + 1, high - 1, min(PROBES_PER_ROUND, high - low - 1)).round()
        yield [int(i) for i in np.unique(inside) if int(i) not in verdicts_of]


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
        np.concatenate([np.unique(flat[i : i + chunk_elements]) for i in chunks] or [np.empty(0)])
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
    scheduler: Evaluator,
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
    shape = responsibility.shape

    def reveal(index: int) -> Fill:
        level = float(levels[chosen[index]])

        def fill(out: np.ndarray) -> None:
            subject.fill_at_least(out, responsibility.reshape(shape), level)

        return fill

    found, confidence, queries = await first_sufficient(
        len(chosen), reveal, target, scheduler, extraction, scoring
    )
    if found is None:
        return Sufficiency(np.ones(shape, bool), target.confidence, queries)
    return Sufficiency(responsibility >= levels[chosen[found]], confidence, queries)


async def extract_spatial(
    subject: Subject,
    responsibility: np.ndarray,
    target: Target,
    scheduler: Evaluator,
    extraction: ExtractionConfig,
    scoring: ScoringConfig,
) -> Sufficiency:
    """ReX's spatial strategy in any number of dimensions: the smallest ball around the
    responsibility peak (radius ``spatial_initial_radius``, grown by ``spatial_radius_eta``) that
    alone is classified as the target, then global extraction inside it.

    The radii are searched like global candidates (smallest passing radius). Without a
    passing ball, or for inputs too large for a distance map, this is global extraction.
    """
    if responsibility.size > LARGE_INPUT_ELEMENTS:
        return await extract_global(subject, responsibility, target, scheduler, extraction, scoring)
    shape = responsibility.shape
    centre = np.unravel_index(int(np.argmax(responsibility)), shape)
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    squared = np.zeros(shape, np.int64)
    for grid, c in zip(grids, centre):
        squared = squared + (grid - c) ** 2
    radii = [extraction.spatial_initial_radius]
    while radii[-1] ** 2 < int(squared.max()):
        radii.append(max(radii[-1] + 1, int(radii[-1] * (1 + extraction.spatial_radius_eta))))

    def ball(index: int) -> Fill:
        def fill(out: np.ndarray) -> None:
            subject.fill_mask(out, squared <= radii[index] ** 2)

        return fill

    found, _, queries = await first_sufficient(
        len(radii), ball, target, scheduler, extraction, scoring
    )
    if found is None:
        inner = await extract_global(
            subject, responsibility, target, scheduler, extraction, scoring
        )
    else:
        inside = np.where(squared <= radii[found] ** 2, responsibility, 0)
        inner = await extract_global(subject, inside, target, scheduler, extraction, scoring)
    return Sufficiency(inner.mask, inner.confidence, queries + inner.queries)


async def extract_contrastive(
    subject: Subject,
    responsibility: np.ndarray,
    target: Target,
    scheduler: Evaluator,
    extraction: ExtractionConfig,
    scoring: ScoringConfig,
) -> Sufficiency:
    """The smallest top-ranked set that is sufficient (shown alone, the model still says the
    target) and necessary (hidden from the input, it no longer does): ReX 0.4's contrastive
    explanation, from paired insertion/deletion candidates. Without such a set, the global
    (sufficient-only) explanation.
    """
    if responsibility.size > LARGE_INPUT_ELEMENTS:
        return await extract_global(subject, responsibility, target, scheduler, extraction, scoring)
    mask, confidence, queries = await _first_top_set(
        subject, responsibility, target, scheduler, extraction, scoring, necessary=True
    )
    if mask is None:
        fallback = await extract_global(
            subject, responsibility, target, scheduler, extraction, scoring
        )
        return Sufficiency(fallback.mask, fallback.confidence, queries + fallback.queries)
    return Sufficiency(mask, confidence, queries)
