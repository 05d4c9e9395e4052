"""Shrinking a sufficient explanation: drop the pieces of it the model does not need.

Global extraction reveals the map's top-ranked elements until the model says the target, so
the explanation holds every element ranked above the last one it needed, even those ranked
high by a flat or noisy map that the model could do without. Shrinking cuts the explanation
into pieces (the cells of a grid laid over the input, intersected with the explanation) and,
round by round:

1. probes the explanation without each piece alone; the pieces whose removal keeps the
   target are *removable*;
2. probes the explanation without the first 1, 2, … removable pieces (least responsible
   first) and keeps the largest removal that still gives the target.

Rounds repeat while something was removed, up to ``shrink_rounds``. The result is sufficient
by construction (its last probe passed) and never larger than the input explanation.

Determinism: the grid, the piece order and every round's probes are a pure function of the
map, the explanation, the settings and the verdicts already back; each round's probes are
sent together and decided only once all are back, so batch size, calls in flight and
completion order cannot change the result.
"""

from __future__ import annotations

import math

import numpy as np

from rex_stream.causal.extraction import Sufficiency
from rex_stream.config import ExtractionConfig, ScoringConfig
from rex_stream.engine.scheduler import Evaluator, Fill
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target, judge

#: About this many pieces an explanation is cut into (the grid's cell follows from it).
PIECES = 32


def pieces_of(mask: np.ndarray, responsibility: np.ndarray, pieces: int = PIECES) -> np.ndarray:
    """A label per element of ``mask``: its grid cell's rank by total responsibility inside
    the mask (0: least responsible), -1 outside. The cell's side is chosen so that the mask
    covers about ``pieces`` cells' worth of elements; ties go to the lower cell number."""
    labels = np.full(mask.shape, -1, np.int64)
    count = int(mask.sum())
    if count == 0:
        return labels
    side = max(1, math.ceil((count / pieces) ** (1.0 / mask.ndim)))
    grids = np.indices(mask.shape)
    cells_per_axis = [math.ceil(n / side) for n in mask.shape]
    cell = np.ravel_multi_index(tuple(g // side for g in grids), cells_per_axis)[mask]
    used, inverse = np.unique(cell, return_inverse=True)
    totals = np.bincount(inverse, weights=responsibility[mask].astype(np.float64))
    order = np.lexsort((used, totals))  # least responsible first, then lower cell
    rank = np.empty(used.size, np.int64)
    rank[order] = np.arange(used.size)
    labels[mask] = rank[inverse]
    return labels


async def shrink(
    subject: Subject,
    responsibility: np.ndarray,
    found: Sufficiency,
    target: Target,
    scheduler: Evaluator,
    extraction: ExtractionConfig,
    scoring: ScoringConfig,
) -> Sufficiency:
    """``found`` without the pieces the model does not need (see the module); its queries
    include ``found``'s. An explanation of the whole input is returned as it is."""
    threshold = target.confidence * extraction.minimum_confidence_threshold
    mask, confidence, spent = found.mask, found.confidence, found.queries
    if mask.all() or mask.shape != responsibility.shape:
        return found

    async def passing(masks: list[np.ndarray]) -> list[tuple[bool, float]]:
        nonlocal spent
        fills: list[Fill] = [_showing(subject, m) for m in masks]
        verdicts = judge(await scheduler.evaluate(fills), scoring, target.classification)
        spent += len(masks)
        return [
            (bool(c == target.classification and p >= threshold), float(p))
            for c, p in zip(verdicts.classes, verdicts.confidences)
        ]

    for _ in range(extraction.shrink_rounds):
        labels = pieces_of(mask, responsibility)
        count = int(labels.max()) + 1
        if count < 2:
            break
        alone = await passing([mask & (labels != i) for i in range(count)])
        removable = [i for i, (ok, _) in enumerate(alone) if ok][: count - 1]  # never all
        if not removable:
            break
        prefixes = [mask & ~np.isin(labels, removable[: j + 1]) for j in range(len(removable))]
        outcome = await passing(prefixes[1:]) if len(prefixes) > 1 else []
        outcome = [alone[removable[0]], *outcome]
        best = max((j for j, (ok, _) in enumerate(outcome) if ok), default=None)
        if best is None:  # a nondeterministic model: the single removal passed before
            break
        mask, confidence = prefixes[best], outcome[best][1]
    return Sufficiency(mask, confidence, spent)


def _showing(subject: Subject, mask: np.ndarray) -> Fill:
    return lambda out: subject.fill_mask(out, mask)
