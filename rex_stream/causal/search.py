"""One iteration of the causal-responsibility search, as an async task.

Each level of the box tree is one step: every active box of every queued job is split into 4
children (from a generator seeded by the box itself, so the tree does not depend on the order
in which anything runs), the 14 mutants of every split are submitted together, and their
verdicts decide the responsibility and the next level's jobs. The next level starts as soon
as the verdicts that choose its jobs are in (see :class:`_Level`); the rest of a level is
still scored, and credited, as if it had been scored at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import anyio
import anyio.abc
import numpy as np

from rex_stream.causal.responsibility import Ledger
from rex_stream.config import QueueStyle, ScoringConfig, SearchConfig
from rex_stream.engine.geometry import SUBSETS, Box, can_split, root_box, split_box
from rex_stream.engine.mask_values import SWEEPS, sweep_range, swept_mask_value
from rex_stream.engine.scheduler import Evaluator, continue_after, rounds_behind
from rex_stream.engine.shared_answers import KeyedFill
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target, judge
from rex_stream.errors import ConfigError, InputError

Job = tuple[Box, ...]


@dataclass(frozen=True)
class IterationResult:
    """What one iteration found: its ledger and its run statistics."""

    index: int
    ledger: Ledger
    passing: int
    failing: int
    depth: int
    box_area_sum: float
    box_count: int
    mask_value: float | None = None  # this iteration's own mask value (a sweep), if any

    @property
    def queries(self) -> int:
        """Mutants this iteration sent to the model."""
        return self.passing + self.failing


@dataclass(frozen=True)
class _Candidate:
    """A passing mutant: its visible active children and its total visible area."""

    active: Job
    area: int


def input_key(subject: Subject) -> int:
    """A stable 63-bit fingerprint of the input tensor, part of every generator's seed."""
    # hash the buffer itself: tobytes() would copy the whole input (512 MiB for a 512³ volume)
    tensor = np.ascontiguousarray(subject.content())  # a text: its words, not its transport
    digest = hashlib.blake2b(tensor.reshape(-1).view(np.uint8).data, digest_size=8)
    return int.from_bytes(digest.digest(), "little") >> 1


def iteration_mask_values(
    subject: Subject, mask_value: float | str, iters: int, seed: int
) -> list[float] | None:
    """Every iteration's mask value for a ``random`` or ``linear`` sweep (see
    :mod:`rex_stream.engine.mask_values`); None when the run masks with one baseline (also
    when the mode's baseline is not the constant mask value: a context input, a reference
    table, a noise floor)."""
    if mask_value not in SWEEPS or np.ndim(subject.baseline) != 0:
        return None
    low, high = sweep_range(subject.tensor)
    return [swept_mask_value(str(mask_value), i, iters, seed, low, high) for i in range(iters)]


def search_root(spatial_shape: tuple[int, ...], search: SearchConfig) -> Box:
    """The box an iteration starts from: the whole input, or ReX's ``use_bounding_box``
    restriction to the box ``(x0, y0, x1, y1)`` (everything outside it stays masked)."""
    if search.bounding_box is None:
        if search.use_bounding_box:
            raise ConfigError(
                "[causal] use_bounding_box needs a box: ReX takes it from the model's own "
                "prediction (a detector script's Prediction.bounding_box) and class scores "
                "carry none; give --bounding-box X0,Y0,X1,Y1 or [causal] bounding_box"
            )
        return root_box(spatial_shape)
    x0, y0, x1, y1 = search.bounding_box
    if len(spatial_shape) != 2:
        raise InputError(
            f"a bounding box (x0, y0, x1, y1) restricts a picture's search; this input has "
            f"{len(spatial_shape)} spatial axes"
        )
    rows, cols = spatial_shape
    if x1 > cols or y1 > rows:
        raise InputError(
            f"bounding box {list(search.bounding_box)} reaches past the input's "
            f"{cols} × {rows} pixels (x1 <= width, y1 <= height)"
        )
    return Box((y0, x0), (y1, x1))


def box_generator(seed: int, key: int, iteration: int, box: Box) -> np.random.Generator:
    """The generator that splits ``box`` in ``iteration``: a pure function of its arguments."""
    return np.random.default_rng([seed, key, iteration, len(box.path), *box.path])


async def run_iteration(
    index: int,
    subject: Subject,
    target: Target,
    scheduler: Evaluator,
    search: SearchConfig,
    scoring: ScoringConfig,
    seed: int,
    key: int,
    weights: np.ndarray | None = None,
    *,
    early: bool = True,
    mask_value: float | None = None,
) -> IterationResult:
    """Run iteration ``index`` of the search on ``subject`` and return its ledger and stats.

    ``weights`` (a responsibility map over the spatial axes) drives the adaptive distribution.
    With ``early`` (and an area-ordered queue of bounded length), a level's mutants go to the
    model smallest first and the next level starts as soon as the verdicts that decide its
    jobs are in, while the rest of the level is still being scored; the ledger is the same,
    summed level by level in the same order once every verdict is in. ``mask_value`` replaces
    the subject's baseline in this iteration (ReX's per-iteration ``random``/``linear``).
    """
    ndim = len(subject.spatial_shape)
    if mask_value is not None:
        subject = subject.with_baseline(mask_value)
    subject = subject.for_iteration(seed, key, index)
    if weights is not None:
        weights = subject.weights_for_view(weights)
    threshold = target.confidence * search.confidence_filter
    scope = (seed, key, index, mask_value)  # with the boxes shown, names a mutant
    queue: list[Job] = [(search_root(subject.spatial_shape, search),)]
    levels: list[_Level] = []
    area_by_depth: dict[int, tuple[float, int]] = {}
    work = 0
    async with anyio.create_task_group() as group:
        while queue:
            splits = _split_level(queue, subject, search, seed, key, index, weights)
            if not splits:
                break
            for _, children in splits:
                depth = children[0].depth
                total, count = area_by_depth.get(depth, (0.0, 0))
                area_by_depth[depth] = (total + sum(c.area for c in children), count + 4)
            level = _Level(splits, subject, early, scope)
            levels.append(level)
            level.submit(group, scheduler, scoring, target.classification, threshold)
            work += level.size
            queue = await level.next_jobs(search)
            if search.search_limit is not None and work >= search.search_limit:
                break
    entries: dict[tuple[Box, int], float] = {}
    passing_total = failing_total = depth_reached = 0
    for level in levels:
        passed, candidates = level.credit(entries, search)
        passing_total += passed
        failing_total += level.size - passed
        if candidates:
            depth_reached = max(depth_reached, max(c.active[0].depth for c in candidates))
    area_total, area_count = area_by_depth.get(depth_reached, (0.0, 0))
    return IterationResult(
        index=index,
        ledger=Ledger.from_entries(_in_input(entries, subject), ndim),
        passing=passing_total,
        failing=failing_total,
        depth=depth_reached,
        box_area_sum=area_total,
        box_count=area_count,
        mask_value=mask_value,
    )


class _Level:
    """One level of one iteration: its splits, their mutants and, as they arrive, verdicts.

    Mutant ``m`` is subset ``m % 14`` of split ``m // 14``. With ``early``, the mutants are
    scored in chunks of one batch, smallest visible area first (ties in mutant order: the
    order in which the pruning sorts them), so the jobs of the next level are known as soon
    as every mutant before the first ``queue_len`` passing ones has its verdict.
    """

    def __init__(
        self,
        splits: list[tuple[Job, tuple[Box, Box, Box, Box]]],
        subject: Subject,
        early: bool,
        scope: Hashable,
    ) -> None:
        self.splits = splits
        self.size = len(splits) * len(SUBSETS)
        self.fills = [
            _ShownBoxes(subject, static + tuple(children[i] for i in subset), scope)
            for static, children in splits
            for subset in SUBSETS
        ]
        self.active = [
            tuple(children[i] for i in subset) for _, children in splits for subset in SUBSETS
        ]
        static_areas = [sum(b.area for b in static) for static, _ in splits]
        self.areas = [
            static_areas[m // len(SUBSETS)] + sum(b.area for b in self.active[m])
            for m in range(self.size)
        ]
        self.early = early
        mutants = range(self.size)
        self.order = sorted(mutants, key=lambda m: self.areas[m]) if early else list(mutants)
        self.classes = np.zeros(self.size, np.int64)
        self.confidences = np.zeros(self.size, np.float64)
        self.passes = np.zeros(self.size, bool)
        self._chunk_of = np.zeros(self.size, np.int64)
        self._chunks: list[anyio.Event] = []
        self._rounds: list[int] = []

    def submit(
        self,
        group: anyio.abc.TaskGroup,
        scheduler: Evaluator,
        scoring: ScoringConfig,
        target: int,
        threshold: float,
    ) -> None:
        """Start scoring the level's mutants (in chunks, in ``order``)."""
        step = max(1, scheduler.max_batch) if self.early else self.size
        for number, first in enumerate(range(0, self.size, step)):
            rows = self.order[first : first + step]
            self._chunk_of[rows] = number
            self._chunks.append(anyio.Event())
            self._rounds.append(0)
            group.start_soon(self._score, number, rows, scheduler, scoring, target, threshold)

    async def _score(
        self,
        number: int,
        rows: list[int],
        scheduler: Evaluator,
        scoring: ScoringConfig,
        target: int,
        threshold: float,
    ) -> None:
        verdicts = judge(await scheduler.evaluate([self.fills[m] for m in rows]), scoring, target)
        self.classes[rows] = verdicts.classes
        self.confidences[rows] = verdicts.confidences
        self.passes[rows] = (verdicts.classes == target) & (verdicts.confidences >= threshold)
        self._rounds[number] = rounds_behind()
        self._chunks[number].set()

    async def _decided(self, mutant: int) -> None:
        """Wait for ``mutant``'s verdict; the caller's chain of rounds now runs through it."""
        number = int(self._chunk_of[mutant])
        await self._chunks[number].wait()
        continue_after(self._rounds[number])

    async def next_jobs(self, search: SearchConfig) -> list[Job]:
        """The next level's jobs: the same as pruning the whole level's passing mutants."""
        keep = search.queue_len
        if self.early and search.queue_style is QueueStyle.AREA and keep is not None:
            jobs: list[Job] = []
            for mutant in self.order:
                await self._decided(mutant)
                if self.passes[mutant]:
                    jobs.append(self.active[mutant])
                    if len(jobs) == keep:
                        break
            return jobs
        for mutant in range(self.size):
            await self._decided(mutant)
        return _prune(self.candidates(), search.queue_style, keep)

    def candidates(self) -> list[_Candidate]:
        """The level's passing mutants, in mutant order (every verdict must be in)."""
        return [_Candidate(self.active[m], self.areas[m]) for m in np.flatnonzero(self.passes)]

    def credit(
        self, entries: dict[tuple[Box, int], float], search: SearchConfig
    ) -> tuple[int, list[_Candidate]]:
        """Add the level's responsibility to ``entries``, split by split in order (so the
        float sums are those of a level scored at once); return (passing, candidates)."""
        passed_total = 0
        for number, (_, children) in enumerate(self.splits):
            rows = slice(number * len(SUBSETS), (number + 1) * len(SUBSETS))
            passed = int(self.passes[rows].sum())
            passed_total += passed
            if not passed:
                continue
            for subset, cls, confidence in zip(SUBSETS, self.classes[rows], self.confidences[rows]):
                share = 1.0 / len(subset)
                if search.weighted:
                    share *= float(confidence)
                for i in subset:
                    amount = share * children[i].depth if search.concentrate else share
                    slot = (children[i], int(cls))
                    entries[slot] = entries.get(slot, 0.0) + amount
        return passed_total, self.candidates()


class _ShownBoxes(KeyedFill):
    """The mutant showing only ``boxes``, named by their extents (neither their order nor
    their paths change the pixels) within ``scope`` (seed, input, iteration, mask value)."""

    __slots__ = ("boxes", "scope", "subject")

    def __init__(self, subject: Subject, boxes: Job, scope: Hashable) -> None:
        self.subject = subject
        self.boxes = boxes
        self.scope = scope

    def __call__(self, out: np.ndarray) -> None:
        self.subject.fill_boxes(out, self.boxes)

    @property
    def key(self) -> Hashable:
        """(scope, the extents of the boxes shown)."""
        return (self.scope, frozenset((box.start, box.stop) for box in self.boxes))


def _split_level(
    queue: Sequence[Job],
    subject: Subject,
    search: SearchConfig,
    seed: int,
    key: int,
    index: int,
    weights: np.ndarray | None,
) -> list[tuple[Job, tuple[Box, Box, Box, Box]]]:
    """Split every splittable active box of every job: ``(static boxes, children)`` pairs."""
    splits = []
    for job in queue:
        for position, box in enumerate(job):
            if box.depth >= search.tree_depth or not can_split(box, search.min_box_size):
                continue
            children = split_box(
                box,
                box_generator(seed, key, index, box),
                search.distribution,
                search.distribution_args,
                None if weights is None else weights[box.slices],
            )
            splits.append((job[:position] + job[position + 1 :], children))
    return splits


def _in_input(
    entries: dict[tuple[Box, int], float], subject: Subject
) -> dict[tuple[Box, int], float]:
    """Map an iteration's entries from the boxes it split onto regions of the input."""
    mapped: dict[tuple[Box, int], float] = {}
    for (box, cls), amount in entries.items():
        for region in subject.input_regions(box):
            slot = (region, cls)
            mapped[slot] = mapped.get(slot, 0.0) + amount
    return mapped


def _prune(candidates: list[_Candidate], style: QueueStyle, keep: int | None) -> list[Job]:
    """The next level's jobs from this level's passing mutants (ReX's ``queue_style``)."""
    if style is QueueStyle.ALL:
        return [c.active for c in candidates]
    if style is QueueStyle.DC:
        return list(dict.fromkeys(c.active for c in candidates))
    if style is QueueStyle.INTERSECTION and len(candidates) > 1:
        names = [set(c.active) for c in candidates]
        common: set[Box] = set()
        for i in range(len(names)):
            common = names[i].intersection(*names[i + 1 :])
            if common:
                break
        candidates = [c for c, n in zip(candidates, names) if common <= n]
    ordered = sorted(candidates, key=lambda c: c.area)
    return [c.active for c in (ordered if keep is None else ordered[:keep])]
