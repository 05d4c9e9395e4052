"""One iteration of the causal-responsibility search, as an async task.

Each level of the box tree is one step: every active box of every queued job is split into 4
children (from a generator seeded by the box itself, so the tree does not depend on the order
in which anything runs), the 14 mutants of every split are submitted together, and their
verdicts decide the responsibility and the next level's jobs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from rex_stream.causal.responsibility import Ledger
from rex_stream.config import QueueStyle, ScoringConfig, SearchConfig
from rex_stream.engine.geometry import SUBSETS, Box, can_split, root_box, split_box
from rex_stream.engine.scheduler import Evaluator
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target, judge

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
    tensor = np.ascontiguousarray(subject.tensor)
    digest = hashlib.blake2b(tensor.reshape(-1).view(np.uint8).data, digest_size=8)
    return int.from_bytes(digest.digest(), "little") >> 1


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
) -> IterationResult:
    """Run iteration ``index`` of the search on ``subject`` and return its ledger and stats.

    ``weights`` (a responsibility map over the spatial axes) drives the adaptive distribution.
    """
    ndim = len(subject.spatial_shape)
    subject = subject.for_iteration(seed, key, index)
    if weights is not None:
        weights = subject.weights_for_view(weights)
    entries: dict[tuple[Box, int], float] = {}
    queue: list[Job] = [(root_box(subject.spatial_shape),)]
    passing_total = failing_total = depth_reached = 0
    area_by_depth: dict[int, tuple[float, int]] = {}
    work = 0
    while queue:
        splits = _split_level(queue, subject, search, seed, key, index, weights)
        if not splits:
            break
        for _, children in splits:
            depth = children[0].depth
            total, count = area_by_depth.get(depth, (0.0, 0))
            area_by_depth[depth] = (total + sum(c.area for c in children), count + 4)
        fills = [
            partial(subject.fill_boxes, boxes=static + tuple(children[i] for i in subset))
            for static, children in splits
            for subset in SUBSETS
        ]
        verdicts = judge(await scheduler.evaluate(fills), scoring, target.classification)
        work += len(fills)
        threshold = target.confidence * search.confidence_filter
        passes = (verdicts.classes == target.classification) & (verdicts.confidences >= threshold)
        candidates: list[_Candidate] = []
        for number, (static, children) in enumerate(splits):
            rows = slice(number * len(SUBSETS), (number + 1) * len(SUBSETS))
            split_passes = passes[rows]
            passed = int(split_passes.sum())
            passing_total += passed
            failing_total += len(SUBSETS) - passed
            if not passed:
                continue
            static_area = sum(b.area for b in static)
            for subset, cls, confidence, ok in zip(
                SUBSETS, verdicts.classes[rows], verdicts.confidences[rows], split_passes
            ):
                share = 1.0 / len(subset)
                if search.weighted:
                    share *= float(confidence)
                for i in subset:
                    amount = share * children[i].depth if search.concentrate else share
                    slot = (children[i], int(cls))
                    entries[slot] = entries.get(slot, 0.0) + amount
                if ok:
                    active = tuple(children[i] for i in subset)
                    area = static_area + sum(b.area for b in active)
                    candidates.append(_Candidate(active, area))
        if candidates:
            depth_reached = max(depth_reached, max(c.active[0].depth for c in candidates))
        queue = _prune(candidates, search.queue_style, search.queue_len)
        if search.search_limit is not None and work >= search.search_limit:
            break
    area_total, area_count = area_by_depth.get(depth_reached, (0.0, 0))
    return IterationResult(
        index=index,
        ledger=Ledger.from_entries(_in_input(entries, subject), ndim),
        passing=passing_total,
        failing=failing_total,
        depth=depth_reached,
        box_area_sum=area_total,
        box_count=area_count,
    )


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
