"""Multiple explanations (ReX's ``--multi``): the global explanation, then spotlight searches
from other places of the map, then the largest set of them that barely overlap.

A *spotlight* is a ball (an interval in 1-D, a disc in 2-D, a ball in 3-D) around a centre. It
is probed with only the ball shown; if the model still says the target, global extraction
restricted to the ball gives a further sufficient explanation. Otherwise the spotlight moves —
to a random untried centre (objective ``none``) or one ``spotlight_step`` away, climbing the
mean or max responsibility under the ball (``mean``/``max``) — up to ``max_spotlight_budget``
times.

Unlike ReX, which probes one spotlight at a time with batch-1 calls, every spotlight runs as its
own task and all of their probes meet in the scheduler, which coalesces them into batches. Each
spotlight draws from its own generator seeded from (seed, input, spotlight), and what it does
next depends only on its own draws and verdicts, so the result does not depend on batch size,
concurrency or completion order. A try probes the largest ball first (one query) and the
smaller radii only when that passes, so a failed try costs one query instead of up to
``no_expansions``. The centres a spotlight tries follow from its draws and the map alone, so
it probes :data:`CENTRES_PER_ROUND` of them a round (fewer dependent round trips, fuller
batches) and takes the first that passes, as trying them one by one would.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

import anyio
import numpy as np

from rex_stream.causal.extraction import LARGE_INPUT_ELEMENTS, Sufficiency, extract_global
from rex_stream.causal.rest_scan import rest_candidates
from rex_stream.causal.separation import separate
from rex_stream.causal.shrink import shrink
from rex_stream.config import ExtractionConfig, MultiConfig, ScoringConfig
from rex_stream.engine.ranking import rank_elements, rank_positions, reveal_top
from rex_stream.engine.scheduler import (
    CountingEvaluator,
    Evaluator,
    Fill,
    continue_after,
    rounds_behind,
)
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target, judge

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Tag mixed into every spotlight's seed, so spotlights never share draws with the search.
_MULTI_STREAM = 0x6D756C74

#: Candidates a spotlight's extraction probes per round (a constant: see first_passing).
PROBES_PER_ROUND = 6

#: Centres a spotlight probes per round (a constant, so the outcome never depends on batching;
#: the probes after the first passing one in its round are spent for nothing).
CENTRES_PER_ROUND = 3

#: Below this many kept explanations, the rest of the input is searched for another.
MIN_EXPLANATIONS = 2

#: Shrink rounds given to the kept explanations when fewer than two are kept (at least).
SHRINK_ROUNDS = 2

#: Random draws a spotlight makes for an untried centre before accepting a tried one.
_CENTRE_DRAWS = 64


@dataclass(frozen=True)
class SpotlightExplanation(Sufficiency):
    """A sufficient explanation found by a spotlight (index 0: the global explanation)."""

    index: int = 0
    centre: tuple[int, ...] = ()


@dataclass(frozen=True)
class MultiExplanation:
    """Every explanation found (``found``) and the ones kept by the overlap rule (``kept``)."""

    found: tuple[SpotlightExplanation, ...]
    kept: tuple[SpotlightExplanation, ...]
    spotlights: int
    failed_spotlights: int
    queries: int

    @property
    def first(self) -> SpotlightExplanation:
        """The global explanation (spotlight 0)."""
        return self.found[0]


def spotlight_radii(extraction: ExtractionConfig, multi: MultiConfig) -> list[int]:
    """The radii a spotlight tries: ``spatial_initial_radius`` grown by
    ``spatial_radius_eta``, ``no_expansions`` radii in all (as ReX's expansion limit)."""
    radii = [extraction.spatial_initial_radius]
    while len(radii) < multi.no_expansions:
        radii.append(max(radii[-1] + 1, int(radii[-1] * (1 + extraction.spatial_radius_eta))))
    return radii


def ball(shape: Sequence[int], centre: Sequence[int], radius: float) -> np.ndarray:
    """Boolean mask of the elements within ``radius`` of ``centre`` (Euclidean)."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    squared = np.zeros(tuple(shape), np.int64)
    for grid, c in zip(grids, centre):
        squared = squared + (grid - int(c)) ** 2
    return squared <= radius * radius


class _Spotlights:
    """What every spotlight of one input shares: the subject, map, target and scheduler."""

    def __init__(
        self,
        subject: Subject,
        responsibility: np.ndarray,
        target: Target,
        scheduler: Evaluator,
        extraction: ExtractionConfig,
        multi: MultiConfig,
        scoring: ScoringConfig,
    ) -> None:
        self.subject = subject
        self.responsibility = responsibility
        self.target = target
        self.scheduler = scheduler
        self.extraction = extraction
        self.multi = multi
        self.scoring = scoring
        self.shape = responsibility.shape
        self.radii = spotlight_radii(extraction, multi)
        self.threshold = target.confidence * extraction.minimum_confidence_threshold

    async def judged(self, masks: Sequence[np.ndarray]) -> list[tuple[bool, float]]:
        """(passes, confidence) with only each mask shown."""
        return await self.verdicts([_showing(self.subject, m) for m in masks])

    async def verdicts(self, fills: Sequence[Fill]) -> list[tuple[bool, float]]:
        """(passes, confidence) of each fill: the target class at ≥ the threshold."""
        verdicts = judge(
            await self.scheduler.evaluate(fills), self.scoring, self.target.classification
        )
        return [
            (bool(c == self.target.classification and p >= self.threshold), float(p))
            for c, p in zip(verdicts.classes, verdicts.confidences)
        ]

    def random_centre(self, rng: np.random.Generator, tried: set[tuple[int, ...]]) -> tuple:
        """A uniformly drawn centre not tried yet (ReX 0.4.1 no longer revisits centres)."""
        centre: tuple[int, ...] = ()
        for _ in range(_CENTRE_DRAWS):
            centre = tuple(int(rng.integers(0, n)) for n in self.shape)
            if centre not in tried:
                break
        return centre

    def objective(self, centre: tuple[int, ...]) -> float:
        """Mean or max responsibility under the largest ball at ``centre``."""
        values = self.responsibility[ball(self.shape, centre, self.radii[-1])]
        if values.size == 0:
            return 0.0
        if self.multi.spotlight_objective_function == "max":
            return float(values.max())
        return float(values.mean())

    def step(self, rng: np.random.Generator, centre: tuple[int, ...]) -> tuple[int, ...]:
        """``spotlight_step`` along every axis, in a random direction each, inside the input."""
        step = self.multi.spotlight_step
        return tuple(
            int(np.clip(c + (step if rng.integers(0, 2) else -step), 0, n - 1))
            for c, n in zip(centre, self.shape)
        )

    def centres(self, rng: np.random.Generator) -> Iterator[tuple[int, ...]]:
        """The centres a spotlight tries, in order: up to ``max_spotlight_budget + 1``. They
        follow from its own draws and the map only (never from verdicts), so a spotlight can
        probe several of them in one round and still find what trying one at a time finds."""
        tried: set[tuple[int, ...]] = set()
        climbing = self.multi.spotlight_objective_function != "none"
        centre = self.random_centre(rng, tried)
        best_centre, best_score = centre, self.objective(centre) if climbing else 0.0
        for _ in range(self.multi.max_spotlight_budget + 1):
            tried.add(centre)
            yield centre
            if not climbing:
                centre = self.random_centre(rng, tried)
                continue
            score = self.objective(centre)
            if score >= best_score:
                best_centre, best_score = centre, score
            centre = self.step(rng, best_centre)
            if centre in tried:
                centre = self.random_centre(rng, tried)

    async def search(self, index: int, rng: np.random.Generator) -> SpotlightExplanation | None:
        """One spotlight: the largest ball at :data:`CENTRES_PER_ROUND` centres a round, until
        one is sufficient (the first in the spotlight's order); then extract inside it."""
        centres = self.centres(rng)
        while batch := list(itertools.islice(centres, CENTRES_PER_ROUND)):
            verdicts = await self.judged([ball(self.shape, c, self.radii[-1]) for c in batch])
            first = next((i for i, (ok, _) in enumerate(verdicts) if ok), None)
            if first is not None:
                return await self.inside_balls(index, batch[first], verdicts[first][1])
        return None

    async def inside_balls(
        self, index: int, centre: tuple[int, ...], confidence: float
    ) -> SpotlightExplanation:
        """The largest ball at ``centre`` passed (at ``confidence``): probe the smaller ones,
        extract inside the smallest that passes."""
        balls = [ball(self.shape, centre, r) for r in self.radii]
        verdicts = [*(await self.judged(balls[:-1]) if len(balls) > 1 else []), (True, confidence)]
        smallest = next(i for i, (ok, _) in enumerate(verdicts) if ok)
        inner = await self.extract_inside(balls[smallest], verdicts[smallest][1])
        queries = len(balls) + inner.queries  # the largest ball's probe included
        return SpotlightExplanation(inner.mask, inner.confidence, queries, index, centre)

    async def rescue(
        self, found: SpotlightExplanation, excluded: np.ndarray
    ) -> SpotlightExplanation | None:
        """A disjoint explanation from ``found``'s spotlight: its balls without the
        ``excluded`` elements (those of the explanations already kept), smallest passing
        radius first, then extraction inside."""
        regions = [ball(self.shape, found.centre, r) & ~excluded for r in self.radii]
        regions = [r for r in regions if r.any()]
        if not regions:
            return None
        verdicts = await self.judged(regions)
        passing = next((i for i, (ok, _) in enumerate(verdicts) if ok), None)
        if passing is None:
            return None
        inner = await self.extract_inside(regions[passing], verdicts[passing][1])
        return SpotlightExplanation(
            inner.mask, inner.confidence, len(regions) + inner.queries, found.index, found.centre
        )

    async def shrunk(self, found: SpotlightExplanation) -> SpotlightExplanation:
        """``found`` without the pieces the model does not need (:mod:`.shrink`)."""
        rounds = max(self.extraction.shrink_rounds, SHRINK_ROUNDS)
        extraction = replace(self.extraction, shrink_rounds=rounds)
        less = await shrink(
            self.subject,
            self.responsibility,
            found,
            self.target,
            self.scheduler,
            extraction,
            self.scoring,
        )
        return SpotlightExplanation(
            less.mask, less.confidence, less.queries, found.index, found.centre
        )

    async def first_passing(
        self,
        count: int,
        fill_for: Callable[[int], Fill],
        known: dict[int, tuple[bool, float]] | None = None,
    ) -> tuple[int | None, float, int]:
        """The first of ``count`` growing candidates that passes, by bracketing with
        :data:`PROBES_PER_ROUND` probes a round (a fixed count, never the batch size: many
        spotlights search at once, so small rounds still fill batches and cost fewer
        queries). The same candidate as a linear scan when sufficiency grows with the set.
        ``known`` verdicts (by candidate) are not asked again; the probes stay where they
        would be without them."""
        verdicts: dict[int, tuple[bool, float]] = dict(known or {})
        low, high = -1, count
        spent = 0
        while high - low > 1:
            inside = np.linspace(low + 1, high - 1, min(PROBES_PER_ROUND, high - low - 1))
            indices = [int(i) for i in np.unique(inside.round()) if int(i) not in verdicts]
            outcome = await self.verdicts([fill_for(i) for i in indices]) if indices else []
            spent += len(indices)
            verdicts.update(zip(indices, outcome))
            high = min((i for i, (ok, _) in verdicts.items() if ok), default=count)
            low = max((i for i, (ok, _) in verdicts.items() if not ok and i < high), default=-1)
        if high == count:
            return None, 0.0, spent
        return high, verdicts[high][1], spent

    async def extract_inside(self, region: np.ndarray, confidence: float) -> Sufficiency:
        """Global extraction over the elements of ``region`` only. The region itself passed
        (at ``confidence``): the last candidate is sufficient and not asked again."""
        inside = np.where(region, self.responsibility.astype(np.float64), -np.inf)
        position = rank_positions(rank_elements(inside))
        total = int(region.sum())
        chunk = self.extraction.chunk_size
        counts = [*range(chunk, total, chunk), total]
        found, confidence, queries = await self.first_passing(
            len(counts),
            lambda i: reveal_top(self.subject, position, counts[i]),
            {len(counts) - 1: (True, confidence)},
        )
        assert found is not None  # the last candidate is known to pass
        return Sufficiency((position < counts[found]).reshape(self.shape), confidence, queries)


async def _rescue_conflicting(
    spotlights: _Spotlights,
    found: Sequence[SpotlightExplanation],
    kept: list[SpotlightExplanation],
    permitted_overlap: float,
) -> list[SpotlightExplanation]:
    """Rounds in which every spotlight whose explanation was not kept looks again inside its
    balls with the kept explanations' elements removed; the new, disjoint explanations join
    the kept set by the same overlap rule. All of a round's probes go to the scheduler
    together; rounds repeat while the set grows, so the outcome is independent of batching.
    A spotlight whose balls failed once is not asked again: the next round removes more."""
    waiting = [e for e in found if all(k.index != e.index for k in kept)]
    while waiting and kept:
        excluded = _union(kept)
        rescued = await _all_at_once([partial(spotlights.rescue, e, excluded) for e in waiting])
        fresh = [e for e in rescued if e is not None]
        if not fresh:
            break
        pool = [*kept, *fresh]
        chosen = [pool[i] for i in separate([e.mask for e in pool], permitted_overlap)]
        if len(chosen) <= len(kept):
            break
        kept = chosen
        rescued = {e.index for e in fresh} - {k.index for k in kept}
        waiting = [e for e in waiting if e.index in rescued]
    return kept


async def _search_the_rest(
    spotlights: _Spotlights, kept: Sequence[SpotlightExplanation], spotlight_count: int
) -> list[SpotlightExplanation]:
    """While fewer than two explanations are kept: is the input without every kept element
    still the target? Then a further explanation, disjoint from all of them, lies in the rest;
    global extraction over the rest finds it (its index follows the spotlights')."""
    if not kept:
        return []
    extra: list[SpotlightExplanation] = []
    index = spotlight_count
    while len(kept) + len(extra) < MIN_EXPLANATIONS:
        rest = ~np.any([k.mask for k in [*kept, *extra]], axis=0)
        if not rest.any():
            break
        ((passing, confidence),) = await spotlights.judged([rest])
        if not passing:
            break
        inner = await spotlights.extract_inside(rest, confidence)
        inside = np.where(inner.mask, spotlights.responsibility, -np.inf)
        peak = np.unravel_index(int(np.argmax(inside)), inside.shape)
        extra.append(
            SpotlightExplanation(
                inner.mask, inner.confidence, inner.queries + 1, index, tuple(int(c) for c in peak)
            )
        )
        index += 1
    return extra


async def _shrink_and_look_again(
    spotlights: _Spotlights,
    found: Sequence[SpotlightExplanation],
    kept: list[SpotlightExplanation],
    permitted_overlap: float,
) -> list[SpotlightExplanation]:
    """Fewer than two kept: large explanations overlap one another and leave too little of
    the input for a second one. Shrink every explanation found (all at once), keep the largest
    set of the shrunk ones that barely overlap, then rescue and search the rest again around
    them; the new set is taken only if it holds more explanations."""
    smaller = await _all_at_once([partial(spotlights.shrunk, e) for e in found])
    chosen = [smaller[i] for i in separate([e.mask for e in smaller], permitted_overlap)]
    again = await _rescue_conflicting(spotlights, smaller, chosen, permitted_overlap)
    again += await _search_the_rest(spotlights, again, spotlights.multi.spotlights)
    return again if len(again) > len(kept) else kept


async def _scan_the_rest(
    spotlights: _Spotlights, kept: Sequence[SpotlightExplanation]
) -> list[SpotlightExplanation]:
    """Parts of the rest (:mod:`.rest_scan`), all probed in one round: the first that passes
    is a further explanation, disjoint from the kept ones (its index follows the rest
    search's)."""
    candidates = [m for _, m in rest_candidates(spotlights.responsibility, _union(kept))]
    if not candidates:
        return []
    verdicts = await spotlights.verdicts([_showing(spotlights.subject, m) for m in candidates])
    first = next((i for i, (ok, _) in enumerate(verdicts) if ok), None)
    if first is None:
        return []
    mask = candidates[first]
    inside = np.where(mask, spotlights.responsibility, -np.inf)
    peak = tuple(int(c) for c in np.unravel_index(int(np.argmax(inside)), inside.shape))
    index = spotlights.multi.spotlights + MIN_EXPLANATIONS
    part = SpotlightExplanation(mask, verdicts[first][1], len(candidates), index, peak)
    return [await spotlights.shrunk(part)]  # a subset that still passes: disjoint too


def _showing(subject: Subject, mask: np.ndarray) -> Fill:
    return lambda out: subject.fill_mask(out, mask)


def _union(explanations: Sequence[SpotlightExplanation]) -> np.ndarray:
    return np.any([e.mask for e in explanations], axis=0)


async def _all_at_once(jobs: Sequence[Callable[[], Awaitable[_T]]]) -> list[_T]:
    """Run ``jobs`` concurrently (their probes meet in the scheduler); results in job order.
    What follows waits for the deepest of them (the run's count of dependent rounds)."""
    results: dict[int, _T] = {}
    depths = [rounds_behind()]

    async def one(position: int, job: Callable[[], Awaitable[_T]]) -> None:
        results[position] = await job()
        depths.append(rounds_behind())

    async with anyio.create_task_group() as group:
        for position, job in enumerate(jobs):
            group.start_soon(one, position, job)
    continue_after(max(depths))
    return [results[i] for i in range(len(jobs))]


async def extract_multi(
    subject: Subject,
    responsibility: np.ndarray,
    target: Target,
    scheduler: Evaluator,
    extraction: ExtractionConfig,
    multi: MultiConfig,
    scoring: ScoringConfig,
    seed: int,
    key: int = 0,
) -> MultiExplanation:
    """The global explanation and ``spotlights - 1`` spotlight searches, all concurrent; then
    the largest set whose pairwise Dice overlap is ≤ ``permitted_overlap`` (the global one
    and the spotlights' explanations are candidates alike)."""
    behind = rounds_behind()
    scheduler = CountingEvaluator(scheduler)
    continue_after(behind)  # the multi step follows the search's rounds (the critical path)
    if responsibility.size > LARGE_INPUT_ELEMENTS:
        # a ball per probe would be input-sized: large volumes get the global one only
        logger.warning(
            "multi explanations need a mask per probe: an input of %d elements gets the "
            "global explanation only",
            responsibility.size,
        )
        only = await extract_global(subject, responsibility, target, scheduler, extraction, scoring)
        peak = np.unravel_index(int(np.argmax(responsibility)), responsibility.shape)
        first = SpotlightExplanation(
            only.mask, only.confidence, only.queries, 0, tuple(int(c) for c in peak)
        )
        return MultiExplanation((first,), (first,), multi.spotlights, 0, scheduler.queries)
    spotlights = _Spotlights(subject, responsibility, target, scheduler, extraction, multi, scoring)

    async def global_explanation() -> SpotlightExplanation:
        # the spotlights' ranked search over the whole input (which gave the target)
        whole = np.ones(responsibility.shape, bool)
        found = await spotlights.extract_inside(whole, target.confidence)
        peak = np.unravel_index(int(np.argmax(responsibility)), responsibility.shape)
        return SpotlightExplanation(
            found.mask, found.confidence, found.queries, 0, tuple(int(c) for c in peak)
        )

    async def spotlight(index: int) -> SpotlightExplanation | None:
        rng = np.random.default_rng([seed, key & 0xFFFFFFFFFFFFFFFF, _MULTI_STREAM, index])
        return await spotlights.search(index, rng)

    searches = [partial(spotlight, index) for index in range(1, multi.spotlights)]
    results = await _all_at_once([global_explanation, *searches])
    found = tuple(r for r in results if r is not None)
    kept = [found[i] for i in separate([e.mask for e in found], multi.permitted_overlap)]
    if multi.rescue:
        kept = await _rescue_conflicting(spotlights, found, kept, multi.permitted_overlap)
        kept += await _search_the_rest(spotlights, kept, multi.spotlights)
        if 0 < len(kept) < MIN_EXPLANATIONS:
            kept = await _shrink_and_look_again(spotlights, found, kept, multi.permitted_overlap)
        if 0 < len(kept) < MIN_EXPLANATIONS:
            kept += await _scan_the_rest(spotlights, kept)
    failed = sum(1 for r in results if r is None)
    logger.info(
        "%d of %d spotlights found an explanation; %d kept at overlap ≤ %g",
        len(found),
        multi.spotlights,
        len(kept),
        multi.permitted_overlap,
    )
    return MultiExplanation(
        found=found,
        kept=tuple(sorted(kept, key=lambda e: e.index)),
        spotlights=multi.spotlights,
        failed_spotlights=failed,
        queries=scheduler.queries,
    )
