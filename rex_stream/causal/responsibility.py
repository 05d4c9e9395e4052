"""Responsibility: an iteration's ledger of (box, class, amount) and the maps it adds up to.

An iteration's whole contribution is a short ledger; dense maps are rebuilt from the ledgers of
all iterations, in iteration order, so the result does not depend on completion order, and any
region of a map can be built on its own (chunk by chunk for volumes larger than memory).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from rex_stream.config import ResponsibilityStyle
from rex_stream.engine.geometry import Box
from rex_stream.errors import RexStreamError


@dataclass(frozen=True)
class Ledger:
    """Responsibility an iteration assigned: ``amount[i]`` over box ``[start[i], stop[i])``
    in the map of class ``classes[i]``."""

    start: np.ndarray  # (n, ndim) int64
    stop: np.ndarray  # (n, ndim) int64
    classes: np.ndarray  # (n,) int64
    amount: np.ndarray  # (n,) float64

    @classmethod
    def empty(cls, ndim: int) -> Ledger:
        """A ledger with no entries."""
        return cls(
            np.zeros((0, ndim), np.int64),
            np.zeros((0, ndim), np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, np.float64),
        )

    @classmethod
    def from_entries(cls, entries: dict[tuple[Box, int], float], ndim: int) -> Ledger:
        """Build from ``{(box, class): amount}`` (insertion order is kept)."""
        if not entries:
            return cls.empty(ndim)
        keys = list(entries)
        return cls(
            np.array([box.start for box, _ in keys], np.int64).reshape(-1, ndim),
            np.array([box.stop for box, _ in keys], np.int64).reshape(-1, ndim),
            np.array([c for _, c in keys], np.int64),
            np.array([entries[k] for k in keys], np.float64),
        )

    def to_array(self) -> np.ndarray:
        """Pack into one float64 table: start…, stop…, class, amount (one row per entry)."""
        return np.concatenate(
            [self.start, self.stop, self.classes[:, None], self.amount[:, None]], axis=1
        ).astype(np.float64)

    @classmethod
    def from_array(cls, table: np.ndarray, ndim: int) -> Ledger:
        """Inverse of :meth:`to_array`."""
        table = np.asarray(table, np.float64).reshape(-1, 2 * ndim + 2)
        return cls(
            table[:, :ndim].astype(np.int64),
            table[:, ndim : 2 * ndim].astype(np.int64),
            table[:, 2 * ndim].astype(np.int64),
            table[:, 2 * ndim + 1].copy(),
        )

    def class_ids(self) -> set[int]:
        """Classes this ledger touches."""
        return {int(c) for c in np.unique(self.classes)}


def _clipped_rows(
    ledger: Ledger, cls: int, region_start: Sequence[int], extent: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``ledger``'s entries for ``cls`` as (lo, hi, amount), boxes clipped to a region."""
    rows = np.flatnonzero(ledger.classes == cls)
    if rows.size == 0:
        return None
    origin = np.asarray(region_start, np.int64)
    lo = np.clip(ledger.start[rows] - origin, 0, extent)
    hi = np.clip(ledger.stop[rows] - origin, 0, extent)
    return lo, hi, ledger.amount[rows]


def _cells(
    lo: np.ndarray, hi: np.ndarray, extent: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The grid of cells the boxes' edges cut a region into: per axis the cells' sizes, and
    each box as a range of cells [lo, hi). Every element of one cell lies in the same boxes."""
    sizes, cell_lo, cell_hi = [], np.empty_like(lo), np.empty_like(hi)
    for axis, length in enumerate(extent):
        edges = np.unique(np.concatenate([[0, length], lo[:, axis], hi[:, axis]]))
        sizes.append(np.diff(edges))
        cell_lo[:, axis] = np.searchsorted(edges, lo[:, axis])
        cell_hi[:, axis] = np.searchsorted(edges, hi[:, axis])
    return sizes, cell_lo, cell_hi


def _accumulate(out: np.ndarray, lo: np.ndarray, hi: np.ndarray, amount: np.ndarray) -> None:
    """``out[box] += amount`` for every box in order (an element's additions keep their order,
    so every sum rounds exactly as the one-box-at-a-time loop does)."""
    for a, b, value in zip(lo.tolist(), hi.tolist(), amount.tolist()):
        out[tuple(slice(x, y) for x, y in zip(a, b))] += value


def _expand(cells: np.ndarray, sizes: list[np.ndarray]) -> np.ndarray:
    """The cell grid at full resolution (each cell's value repeated over its elements)."""
    for axis, size in enumerate(sizes):
        cells = np.repeat(cells, size, axis=axis)
    return cells


def _additive_map(
    ledgers: Iterable[Ledger], cls: int, region_start: Sequence[int], extent: np.ndarray
) -> np.ndarray:
    """The sum of every ledger's contributions for ``cls`` over a region.

    Summed over the cells that all the boxes together cut the region into, then spread: every
    element of a cell receives the same additions in the same order (ledger by ledger, entry
    by entry), so each sum rounds exactly as summing element by element does.
    """
    clipped = (_clipped_rows(ledger, cls, region_start, extent) for ledger in ledgers)
    parts = [part for part in clipped if part is not None]
    if not parts:
        return np.zeros(tuple(extent.tolist()), np.float64)
    lo, hi, amount = (np.concatenate([part[k] for part in parts]) for k in range(3))
    sizes, cell_lo, cell_hi = _cells(lo, hi, extent)
    cells = np.zeros(tuple(len(size) for size in sizes), np.float64)
    _accumulate(cells, cell_lo, cell_hi, amount)
    return _expand(cells, sizes)


def _log_factor(
    ledger: Ledger, cls: int, region_start: Sequence[int], extent: np.ndarray
) -> np.ndarray | None:
    """log(1 + an iteration's contributions) over a region, or None if it has none for ``cls``.

    The sums are taken over the cells the boxes cut the region into (a few hundred at most,
    not every element), then the logs are spread over the cells' elements: the same values,
    bit for bit, as summing over every element, for a fraction of the work.
    """
    clipped = _clipped_rows(ledger, cls, region_start, extent)
    if clipped is None:
        return None
    lo, hi, amount = clipped
    sizes, cell_lo, cell_hi = _cells(lo, hi, extent)
    local = np.ones(tuple(len(size) for size in sizes), np.float64)
    _accumulate(local, cell_lo, cell_hi, amount)
    return _expand(np.log(local), sizes)


def build_log_map(
    ledgers: Iterable[Ledger],
    cls: int,
    shape: Sequence[int],
    region: tuple[Sequence[int], Sequence[int]] | None = None,
) -> np.ndarray:
    """The logarithm of the multiplicative (ReX 0.4) map of class ``cls`` over ``region``: the
    sum over iterations of log(1 + that iteration's contributions).

    The product itself overflows float64 after a few hundred iterations (every factor is ≥ 1),
    and an overflowed map normalises to NaN; its logarithm stays finite for any number of
    iterations, and ``exp(log - max log)`` is the max-normalised map without the product.
    """
    start, stop = region if region is not None else ([0] * len(shape), list(shape))
    extent = np.asarray([b - a for a, b in zip(start, stop)], np.int64)
    total = np.zeros(tuple(extent.tolist()), np.float64)
    for ledger in ledgers:
        factor = _log_factor(ledger, cls, start, extent)
        if factor is not None:
            total += factor
    return total


def build_map(
    ledgers: Iterable[Ledger],
    cls: int,
    shape: Sequence[int],
    style: ResponsibilityStyle,
    region: tuple[Sequence[int], Sequence[int]] | None = None,
    log_peak: float | None = None,
) -> np.ndarray:
    """The map of class ``cls`` over ``region`` (default: everything).

    Additive: the sum of all contributions. Multiplicative (ReX 0.4): the product over
    iterations of (1 + that iteration's contributions), merged in log space and scaled by
    ``exp(-log_peak)`` (default: the region's own largest log), so it never overflows;
    :func:`normalise` then gives ReX's max-normalised map, whatever the scale.
    """
    start, stop = region if region is not None else ([0] * len(shape), list(shape))
    if style is ResponsibilityStyle.ADDITIVE:
        extent = np.asarray([b - a for a, b in zip(start, stop)], np.int64)
        return _additive_map(ledgers, cls, start, extent)
    logs = build_log_map(ledgers, cls, shape, region)
    if log_peak is None:
        log_peak = float(logs.max()) if logs.size else 0.0
    return np.exp(logs - log_peak)


def build_map_chunked(
    ledgers: Sequence[Ledger],
    cls: int,
    shape: Sequence[int],
    style: ResponsibilityStyle,
    out: np.ndarray | None = None,
    chunk_elements: int = 1 << 22,
) -> np.ndarray:
    """:func:`build_map` region by region into ``out`` (float32 by default), max-normalised
    as :func:`normalise` does.

    Slabs along the first spatial axis are built in float64 and stored as float32, so the
    peak memory is the output plus two slabs of about ``chunk_elements`` elements, instead
    of two float64 maps of the whole input (2 GiB each for a 512³ volume). A multiplicative
    map takes two passes: the largest log over every slab first, so all slabs share a scale.
    """
    shape = tuple(int(n) for n in shape)
    if out is None:
        out = np.empty(shape, np.float32)
    plane = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    step = max(1, chunk_elements // max(plane, 1))
    regions = [
        ([first, *[0] * (len(shape) - 1)], [min(shape[0], first + step), *shape[1:]])
        for first in range(0, shape[0], step)
    ]
    log_peak = None
    if style is ResponsibilityStyle.MULTIPLICATIVE:
        peaks = [float(build_log_map(ledgers, cls, shape, r).max(initial=0.0)) for r in regions]
        log_peak = max(peaks, default=0.0)
    for region in regions:
        first, last = region[0][0], region[1][0]
        out[first:last] = build_map(ledgers, cls, shape, style, region, log_peak)
    if style is ResponsibilityStyle.MULTIPLICATIVE and out.size:
        peak = float(out.max())
        if peak > 0:
            out /= peak
    return out


def check_finite(responsibility: np.ndarray, what: str) -> None:
    """Refuse a map with NaN or infinite values: nothing downstream could mean anything."""
    if not np.all(np.isfinite(responsibility)):
        bad = int(np.size(responsibility) - np.count_nonzero(np.isfinite(responsibility)))
        raise RexStreamError(
            f"the responsibility map of {what} has {bad} NaN or infinite values: the model "
            "returned non-finite scores, or the merge of its iterations failed"
        )


def normalise(responsibility: np.ndarray, style: ResponsibilityStyle) -> np.ndarray:
    """ReX's final scaling: multiplicative maps are divided by their maximum."""
    if style is ResponsibilityStyle.MULTIPLICATIVE:
        peak = float(responsibility.max()) if responsibility.size else 0.0
        if peak > 0:
            return responsibility / peak
    return responsibility
