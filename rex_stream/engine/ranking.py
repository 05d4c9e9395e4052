"""Ranking the elements of a responsibility map: shared by extraction and evaluation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rex_stream.engine.subject import Subject


def rank_elements(responsibility: np.ndarray) -> np.ndarray:
    """Flat indices from most to least responsible; ties go to the larger index (as ReX)."""
    flat = np.asarray(responsibility, np.float64).ravel()
    indices = np.arange(flat.size)
    return np.lexsort((-indices, -flat))


def rank_positions(order: np.ndarray) -> np.ndarray:
    """``position[i]``: where flat element ``i`` comes in ``order``."""
    position = np.empty_like(order)
    position[order] = np.arange(order.size)
    return position


def reveal_top(subject: Subject, position: np.ndarray, count: int) -> Callable[[np.ndarray], None]:
    """A fill showing only the ``count`` highest-ranked elements."""
    shape = subject.spatial_shape

    def fill(out: np.ndarray) -> None:
        subject.fill_mask(out, (position < count).reshape(shape))

    return fill


def hide_top(subject: Subject, position: np.ndarray, count: int) -> Callable[[np.ndarray], None]:
    """A fill hiding the ``count`` highest-ranked elements."""
    shape = subject.spatial_shape

    def fill(out: np.ndarray) -> None:
        subject.fill_mask(out, (position >= count).reshape(shape))

    return fill
