"""Rankings of a case's features that fills read slab by slab, so no plan needs a whole-input
array of ranks.

A ranking answers one question: which features of the flat range ``[start, stop)`` are among
its ``count`` highest ranked (``first``). Small inputs hold a rank per feature
(:class:`PositionRanking`). Inputs above :data:`LARGE_FEATURES` elements (a 512³ volume has
134 M) use :class:`LevelRanking`, which keeps only the value and the tie cut at each count a
plan asks for (found by a radix selection over the map, slab by slab), or
:class:`PatchRanking`, which keeps the rank of each patch and computes patch numbers per slab.
Both give exactly the sets :func:`rex_stream.engine.ranking.rank_elements` gives: descending
value, ties to the larger index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np

#: Features above which plans rank without a per-feature array (the bounded path).
LARGE_FEATURES = 1 << 24

#: Elements per slab when a fill or a pass walks a large input.
SLAB_ELEMENTS = 1 << 22

_DIGIT_BITS = 16


def is_large(features: int) -> bool:
    """Whether an input of ``features`` features takes the bounded path."""
    return features > LARGE_FEATURES


def slab_ranges(shape: Sequence[int], slab: int | None = None) -> Iterator[tuple[int, int]]:
    """Flat ranges of whole rows along the first axis of ``shape``, about ``slab`` elements
    (:data:`SLAB_ELEMENTS` unless given)."""
    slab = SLAB_ELEMENTS if slab is None else slab
    plane = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    rows = max(1, slab // max(1, plane))
    for first in range(0, int(shape[0]), rows):
        yield first * plane, min(int(shape[0]), first + rows) * plane


def digest(array: np.ndarray) -> bytes:
    """A content digest of an array, read in place (no copy of a large array)."""
    data = np.ascontiguousarray(array)
    hasher = hashlib.blake2b(str(data.dtype).encode(), digest_size=16)
    hasher.update(memoryview(data.reshape(-1)).cast("B"))  # type: ignore[arg-type]
    return hasher.digest()


class Ranking:
    """Which features are among the ``count`` highest ranked, range by range."""

    size: int
    key: bytes

    def first(self, count: int, start: int, stop: int) -> np.ndarray:
        """Bool over features ``[start, stop)``: among the ``count`` highest ranked."""
        raise NotImplementedError


class PositionRanking(Ranking):
    """A rank per feature (``position[i]``: where feature ``i`` comes)."""

    def __init__(self, position: np.ndarray, key: bytes | None = None) -> None:
        self.position = position.reshape(-1)
        self.size = int(self.position.size)
        self.key = key if key is not None else digest(self.position)

    def first(self, count: int, start: int, stop: int) -> np.ndarray:
        """``position < count`` over the range."""
        return self.position[start:stop] < count


def _order_keys(values: np.ndarray) -> np.ndarray:
    """Unsigned integers in the order of the float ``values`` (−0.0 and 0.0 equal)."""
    floats = values + values.dtype.type(0)  # −0.0 + 0.0 is +0.0
    bits = floats.view(np.uint32 if floats.dtype.itemsize == 4 else np.uint64)
    sign = bits.dtype.type(1 << (8 * bits.dtype.itemsize - 1))
    return np.where(bits & sign, ~bits, bits | sign)


class LevelRanking(Ranking):
    """The ``count`` highest-valued features for a known set of counts, kept as (value, tie
    cut) per count: features above the value, and those equal to it from the cut index on."""

    def __init__(
        self, weights: np.ndarray, counts: Sequence[int], *, use_abs: bool = False
    ) -> None:
        values = weights.reshape(-1)
        if values.dtype not in (np.float32, np.float64):
            values = values.astype(np.float64)
        self.values = values
        self.use_abs = use_abs
        self.size = int(values.size)
        #: per count: (its value, features strictly above it, index from which ties count)
        self.levels: dict[int, tuple[float, int, int]] = {}
        wanted = sorted({int(c) for c in counts if 0 < int(c) < self.size})
        if wanted:
            self._select(wanted)
        self.key = digest(values) + repr(("levels", use_abs)).encode()

    def slab(self, start: int, stop: int) -> np.ndarray:
        """The ranked values over ``[start, stop)`` (absolute values with ``use_abs``)."""
        part = self.values[start:stop]
        return np.abs(part) if self.use_abs else part

    def _slabs(self) -> Iterator[tuple[int, int]]:
        return slab_ranges((self.size,))

    def first(self, count: int, start: int, stop: int) -> np.ndarray:
        """Above the count's value, or equal to it at an index ≥ its tie cut."""
        if count <= 0:
            return np.zeros(stop - start, dtype=bool)
        if count >= self.size:
            return np.ones(stop - start, dtype=bool)
        level, _, cut = self.levels[count]
        part = self.slab(start, stop)
        chosen = part > level
        if cut <= start:
            chosen |= part == level
        elif cut < stop:
            chosen[cut - start :] |= part[cut - start :] == level
        return chosen

    def _select(self, counts: list[int]) -> None:
        """Radix selection of the count-th largest key for every count at once: one pass per
        16-bit digit, each a histogram over (digits found so far, next digit)."""
        width = 8 * self.values.dtype.itemsize
        key_type = np.uint32 if width == 32 else np.uint64
        prefix = dict.fromkeys(counts, 0)  # the key's digits found so far
        above = dict.fromkeys(counts, 0)  # features whose key is above those digits
        mask = key_type((1 << _DIGIT_BITS) - 1)
        for done in range(0, width, _DIGIT_BITS):
            shift = width - done - _DIGIT_BITS
            known = np.array(sorted(set(prefix.values())), dtype=key_type)
            histogram = np.zeros(known.size << _DIGIT_BITS, dtype=np.int64)
            for start, stop in self._slabs():
                keys = _order_keys(self.slab(start, stop))
                heads = keys >> key_type(shift + _DIGIT_BITS) if done else keys & key_type(0)
                slot = np.minimum(np.searchsorted(known, heads), known.size - 1)
                match = known[slot] == heads
                digits = ((keys[match] >> key_type(shift)) & mask).astype(np.int64)
                flat = (slot[match].astype(np.int64) << _DIGIT_BITS) + digits
                histogram += np.bincount(flat, minlength=histogram.size)
            table = histogram.reshape(known.size, -1)
            for count in counts:
                row = table[int(np.searchsorted(known, key_type(prefix[count])))]
                from_top = np.cumsum(row[::-1])
                step = int(np.searchsorted(from_top, count - above[count]))  # reaches the count
                above[count] += int(from_top[step - 1]) if step else 0
                prefix[count] = (prefix[count] << _DIGIT_BITS) | ((1 << _DIGIT_BITS) - 1 - step)
        values = {c: _key_value(prefix[c], self.values.dtype) for c in counts}
        cuts = self._tie_cuts({c: c - above[c] for c in counts}, values)
        for count in counts:
            self.levels[count] = (values[count], above[count], cuts[count])

    def _tie_cuts(self, taken: dict[int, int], values: dict[int, float]) -> dict[int, int]:
        """For each count, the index from which features equal to its value are among the
        first ``count`` (ties go to the larger index, as ``rank_elements``)."""
        remaining = dict(taken)
        cuts = dict.fromkeys(taken, 0)
        for start, stop in reversed(list(self._slabs())):
            if not remaining:
                break
            part = self.slab(start, stop)
            for count in list(remaining):
                equal = np.flatnonzero(part == values[count])
                if equal.size >= remaining[count]:
                    cuts[count] = start + int(equal[equal.size - remaining[count]])
                    del remaining[count]
                else:
                    remaining[count] -= equal.size
        return cuts

    def band_sums(self, counts: Sequence[int]) -> np.ndarray:
        """Σ ranked value over each band of ranks ``[counts[j-1], counts[j])`` (``counts``
        increasing, the first band from rank 0; a count ≥ the size means all features)."""
        levels = np.array(sorted({self.levels[c][0] for c in counts if c in self.levels}))
        over = np.zeros(levels.size + 1)  # Σ values with exactly b levels below them
        for start, stop in self._slabs():
            part = self.slab(start, stop)
            below = np.searchsorted(levels, part, side="left")
            over += np.bincount(below, weights=part.astype(np.float64), minlength=over.size)
        above_level = np.cumsum(over[::-1])[::-1]  # [b]: Σ of values above level b - 1
        totals = []
        for count in counts:
            if count <= 0:
                totals.append(0.0)
            elif count >= self.size:
                totals.append(float(above_level[0]))
            else:
                level, higher, _ = self.levels[count]
                index = int(np.searchsorted(levels, level)) + 1
                rest = float(above_level[index]) if index < above_level.size else 0.0
                totals.append(rest + (count - higher) * level)
        return np.diff(np.concatenate([[0.0], totals]))


def _key_value(key: int, dtype: np.dtype) -> float:
    """The float whose :func:`_order_keys` key is ``key``."""
    key_type = np.uint32 if np.dtype(dtype).itemsize == 4 else np.uint64
    bits = np.array([key], dtype=key_type)
    sign = key_type(1 << (8 * np.dtype(dtype).itemsize - 1))
    raw = np.where(bits & sign, bits ^ sign, ~bits)
    return float(raw.view(dtype)[0])


class PatchRanking(Ranking):
    """Patches in a ranked order: ``rank_of_patch`` per patch, the patch numbers of each slab
    computed from the coordinates (``labels(first_row, stop_row)``) when a fill asks."""

    def __init__(
        self,
        rank_of_patch: np.ndarray,
        labels: Callable[[int, int], np.ndarray],
        shape: Sequence[int],
        patch_size: int,
    ) -> None:
        self.rank_of_patch = rank_of_patch
        self.labels = labels
        self.size = int(np.prod(shape, dtype=np.int64))
        self.plane = self.size // int(shape[0])
        tiling = ("patches", tuple(int(d) for d in shape), int(patch_size))
        self.key = digest(rank_of_patch) + repr(tiling).encode()

    def first(self, count: int, start: int, stop: int) -> np.ndarray:
        """Features of the ``count`` first patches, over whole rows ``[start, stop)``."""
        rows = self.labels(start // self.plane, stop // self.plane)
        return (self.rank_of_patch[rows] < count).reshape(-1)
