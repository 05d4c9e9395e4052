"""The rest of the input, scanned: candidates for an explanation disjoint from the kept ones.

``multi`` asks whether the input without the kept explanations still gives the target; with a
weak top class it often does not — the elements next to the kept explanation, or context,
pull the model to another class. Sufficiency is not monotone, though: a part of the rest can
pass where the whole rest fails. This module lists such parts: the rest is the input without
the kept elements grown by a *gap* (elements within that many steps along the axes, so the
new explanation does not merely continue the kept one), its elements ranked by the map, and
its top ``count`` elements for :data:`COUNTS` log-spaced counts up to all of it. The list is a
pure function of the map, the kept mask and the settings; the caller probes all of it in one
round and takes the first (smallest) candidate of the first gap that passes.
"""

from __future__ import annotations

import numpy as np

from rex_stream.engine.ranking import rank_elements, rank_positions

#: Gaps (steps along the axes) around the kept elements, tried in this order.
GAPS = (0, 6, 12)

#: Log-spaced counts of the rest's top-ranked elements probed per gap.
COUNTS = 40

#: The smallest count probed (elements).
SMALLEST = 20


def grow(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` with every element within ``steps`` axis steps of it (city-block distance)."""
    grown = np.asarray(mask, bool).copy()
    for _ in range(steps):
        step = grown.copy()
        for axis in range(grown.ndim):
            ahead = [slice(None)] * grown.ndim
            behind = [slice(None)] * grown.ndim
            ahead[axis], behind[axis] = slice(1, None), slice(None, -1)
            step[tuple(behind)] |= grown[tuple(ahead)]
            step[tuple(ahead)] |= grown[tuple(behind)]
        grown = step
    return grown


def rest_candidates(
    responsibility: np.ndarray, kept: np.ndarray, gaps: tuple[int, ...] = GAPS
) -> list[tuple[int, np.ndarray]]:
    """(gap, mask) candidates, by gap then by size, each disjoint from ``kept`` grown by gap;
    duplicates (a gap that leaves the same rest) are left out."""
    out: list[tuple[int, np.ndarray]] = []
    seen: set[bytes] = set()
    for gap in gaps:
        rest = ~grow(kept, gap)
        total = int(rest.sum())
        if total == 0:
            continue
        key = np.packbits(rest).tobytes()
        if key in seen:
            continue
        seen.add(key)
        ranked = np.where(rest, responsibility.astype(np.float64), -np.inf)
        position = rank_positions(rank_elements(ranked)).reshape(rest.shape)
        counts = sorted({int(c) for c in np.geomspace(min(SMALLEST, total), total, COUNTS)})
        out += [(gap, position < c) for c in counts]
    return out
