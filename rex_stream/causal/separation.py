"""Choosing the largest set of explanations whose pairwise overlap is small enough.

ReX enumerates the power set of its explanations (2^N subsets) for the largest conflict-free
one. Here the same question — a maximum independent set of the *conflict graph*, whose edges
join explanations with Dice overlap above ``permitted_overlap`` — is answered by branch and
bound over bit sets: exact, least total area among the largest sets, and fast for the few
dozen explanations a run finds (identical masks are merged first). A node budget guards
against pathological inputs; past it, the best set found so far (at least the greedy one) is
kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Branch-and-bound nodes visited before the best set so far is accepted.
NODE_BUDGET = 200_000


def dice_matrix(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Pairwise Dice coefficients 2|A∩B| / (|A| + |B|) of boolean masks (0 where both empty)."""
    if not masks:
        return np.zeros((0, 0))
    flat = np.stack([np.asarray(m, bool).reshape(-1) for m in masks]).astype(np.float32)
    inter = flat @ flat.T
    sizes = flat.sum(axis=1)
    total = sizes[:, None] + sizes[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(total > 0, 2.0 * inter / total, 0.0)
    return np.asarray(dice, np.float64)


def separate(masks: Sequence[np.ndarray], permitted_overlap: float) -> list[int]:
    """Indices (ascending) of the largest set of non-empty masks whose pairwise Dice
    coefficient is ≤ ``permitted_overlap``; among equally large sets, the least total area,
    then the earliest indices. Duplicate masks count once (the first of them)."""
    sizes = [int(np.count_nonzero(m)) for m in masks]
    candidates: list[int] = []
    seen: set[bytes] = set()
    for i, mask in enumerate(masks):
        if sizes[i] == 0:
            continue
        key = np.packbits(np.asarray(mask, bool).reshape(-1)).tobytes()
        if key not in seen:
            seen.add(key)
            candidates.append(i)
    if not candidates:
        return []
    dice = dice_matrix([masks[i] for i in candidates])
    conflict = dice > permitted_overlap + 1e-12
    chosen = max_independent_set(conflict, [sizes[i] for i in candidates])
    return sorted(candidates[j] for j in chosen)


def max_independent_set(conflict: np.ndarray, weights: Sequence[int]) -> list[int]:
    """The largest set of vertices with no edge between them (``conflict`` is a symmetric
    boolean matrix); ties broken by the least total weight, then the earliest vertices."""
    n = len(weights)
    neighbours = [sum(1 << j for j in range(n) if j != i and conflict[i, j]) for i in range(n)]
    best = _greedy(neighbours, weights)
    best_key = (-len(best), sum(weights[i] for i in best), best)
    visited = 0

    def search(chosen: list[int], remaining: int, weight: int) -> None:
        nonlocal best, best_key, visited
        visited += 1
        if visited > NODE_BUDGET:
            return
        if remaining == 0:
            key = (-len(chosen), weight, sorted(chosen))
            if key < best_key:
                best, best_key = sorted(chosen), key
            return
        if len(chosen) + remaining.bit_count() < len(best):
            return  # even taking every remaining vertex cannot beat the best size
        vertex = (remaining & -remaining).bit_length() - 1
        rest = remaining & ~(1 << vertex)
        search([*chosen, vertex], rest & ~neighbours[vertex], weight + weights[vertex])
        search(chosen, rest, weight)

    search([], (1 << n) - 1, 0)
    return best


def _greedy(neighbours: Sequence[int], weights: Sequence[int]) -> list[int]:
    """Smallest-first greedy independent set: a quick lower bound for the exact search."""
    taken: list[int] = []
    blocked = 0
    for vertex in sorted(range(len(weights)), key=lambda v: (weights[v], v)):
        if not blocked >> vertex & 1:
            taken.append(vertex)
            blocked |= neighbours[vertex] | (1 << vertex)
    return sorted(taken)
