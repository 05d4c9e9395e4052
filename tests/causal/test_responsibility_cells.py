"""The map of a ledger is summed over the cells its boxes cut the region into, then spread:
it must equal, bit for bit, the element-by-element sums of one box at a time (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest

from rex_stream.causal.responsibility import (
    Ledger,
    build_log_map,
    build_map,
    build_map_chunked,
)
from rex_stream.config import ResponsibilityStyle


def _random_ledger(rng: np.random.Generator, shape: tuple[int, ...], rows: int) -> Ledger:
    shape_a = np.asarray(shape)
    a = rng.integers(-3, shape_a + 3, size=(rows, len(shape)))
    b = rng.integers(-3, shape_a + 3, size=(rows, len(shape)))
    # amounts of very different sizes, so that the order of additions shows in the roundings
    amount = rng.choice([1e-3, 0.1, 1 / 3, 7.0, 1e6], size=rows) * rng.random(rows)
    return Ledger(
        np.minimum(a, b), np.maximum(a, b), rng.integers(0, 3, size=rows), amount.astype(float)
    )


def _reference_log_map(ledgers, cls, shape, region=None) -> np.ndarray:
    """The definition, element by element: log(1 + Σ contributions in ledger order)."""
    start, stop = region if region is not None else ([0] * len(shape), list(shape))
    total = np.zeros(tuple(b - a for a, b in zip(start, stop)), np.float64)
    for ledger in ledgers:
        local = np.ones_like(total)
        rows = np.flatnonzero(ledger.classes == cls)
        for row in rows:
            lo = np.clip(ledger.start[row] - start, 0, total.shape)
            hi = np.clip(ledger.stop[row] - start, 0, total.shape)
            if np.all(hi > lo):
                local[tuple(slice(x, y) for x, y in zip(lo, hi))] += ledger.amount[row]
        if rows.size:
            total += np.log(local)
    return total


def _reference_additive_map(ledgers, cls, shape, region=None) -> np.ndarray:
    """The definition, element by element: Σ contributions, ledger by ledger, in order."""
    start, stop = region if region is not None else ([0] * len(shape), list(shape))
    total = np.zeros(tuple(b - a for a, b in zip(start, stop)), np.float64)
    for ledger in ledgers:
        for row in np.flatnonzero(ledger.classes == cls):
            lo = np.clip(ledger.start[row] - start, 0, total.shape)
            hi = np.clip(ledger.stop[row] - start, 0, total.shape)
            if np.all(hi > lo):
                total[tuple(slice(x, y) for x, y in zip(lo, hi))] += ledger.amount[row]
    return total


@pytest.mark.parametrize("shape", [(37, 53), (9, 11, 13), (101,)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_additive_map_equals_the_element_by_element_sums(shape, seed) -> None:
    rng = np.random.default_rng(seed)
    ledgers = [_random_ledger(rng, shape, int(rng.integers(0, 60))) for _ in range(6)]
    additive = ResponsibilityStyle.ADDITIVE
    for cls in range(3):
        expected = _reference_additive_map(ledgers, cls, shape)
        assert np.array_equal(build_map(ledgers, cls, shape, additive), expected)
        region = ([2] * len(shape), [n - 3 for n in shape])
        assert np.array_equal(
            build_map(ledgers, cls, shape, additive, region),
            _reference_additive_map(ledgers, cls, shape, region),
        )
    assert not np.array_equal(
        build_map(ledgers[::-1], 1, shape, additive), _reference_additive_map(ledgers, 1, shape)
    ) or not any(len(ledger.classes) for ledger in ledgers)


@pytest.mark.parametrize("shape", [(37, 53), (9, 11, 13), (101,)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_log_map_equals_the_element_by_element_sums(shape, seed) -> None:
    rng = np.random.default_rng(seed)
    ledgers = [_random_ledger(rng, shape, int(rng.integers(0, 60))) for _ in range(6)]
    for cls in range(3):
        expected = _reference_log_map(ledgers, cls, shape)
        got = build_log_map(ledgers, cls, shape)
        assert got.shape == expected.shape
        assert np.array_equal(got, expected)
        region = ([2] * len(shape), [n - 3 for n in shape])
        assert np.array_equal(
            build_log_map(ledgers, cls, shape, region),
            _reference_log_map(ledgers, cls, shape, region),
        )


def test_a_real_difference_in_order_would_show() -> None:
    """The witness above can fail: summing the same boxes in another order rounds otherwise."""
    shape = (8, 8)
    # these four in this order and with the last two swapped give logs one ulp apart
    ledger = Ledger(
        np.zeros((4, 2), np.int64),
        np.full((4, 2), 8, np.int64),
        np.ones(4, np.int64),
        np.array(
            [0.00938595867742349, 8.933170425576351e-10, 3.0293694753353737, 6.958328667684435e-10]
        ),
    )
    flipped = Ledger(ledger.start, ledger.stop, ledger.classes, ledger.amount[[0, 1, 3, 2]])
    assert not np.array_equal(build_log_map([ledger], 1, shape), build_log_map([flipped], 1, shape))


@pytest.mark.parametrize("style", list(ResponsibilityStyle))
def test_chunked_map_equals_the_whole_map(style) -> None:
    rng = np.random.default_rng(5)
    shape = (40, 30)
    ledgers = [_random_ledger(rng, shape, 25) for _ in range(4)]
    whole = build_map(ledgers, 1, shape, style)
    peak = float(whole.max())
    if style is ResponsibilityStyle.MULTIPLICATIVE and peak > 0:
        whole = whole / peak
    chunked = build_map_chunked(ledgers, 1, shape, style, chunk_elements=97)
    assert np.array_equal(chunked, whole.astype(np.float32))
