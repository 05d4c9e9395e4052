"""Item 16 of issue 27: a multiplicative map of many iterations must not overflow into NaN
(or collapse into zeros after an infinite peak), and a NaN map is refused, never stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rex_stream import explain_sync
from rex_stream.causal.responsibility import (
    Ledger,
    build_map,
    build_map_chunked,
    check_finite,
    normalise,
)
from rex_stream.config import ResponsibilityStyle
from rex_stream.engine.geometry import Box
from rex_stream.errors import RexStreamError

MULTIPLICATIVE = ResponsibilityStyle.MULTIPLICATIVE


def _ledgers(iterations: int, size: int) -> list[Ledger]:
    """Every iteration gives the whole map 1 (a factor 2 each); the last one gives the top-left
    quarter 3 (a factor 4): the normalised map is exactly 1 there and 0.5 elsewhere."""
    whole = Box((0, 0), (size, size))
    corner = Box((0, 0), (size // 2, size // 2))
    ledgers = [Ledger.from_entries({(whole, 1): 1.0}, 2) for _ in range(iterations - 1)]
    ledgers.append(Ledger.from_entries({(whole, 1): 1.0, (corner, 1): 2.0}, 2))
    return ledgers


@pytest.mark.parametrize("iterations", [10, 600, 1000, 5000])
def test_a_multiplicative_map_of_many_iterations_stays_finite(iterations: int) -> None:
    size = 64
    ledgers = _ledgers(iterations, size)
    responsibility = normalise(build_map(ledgers, 1, (size, size), MULTIPLICATIVE), MULTIPLICATIVE)
    expected = np.full((size, size), 0.5)
    expected[: size // 2, : size // 2] = 1.0
    np.testing.assert_allclose(responsibility, expected, rtol=1e-9)
    chunked = build_map_chunked(ledgers, 1, (size, size), MULTIPLICATIVE, chunk_elements=size * 5)
    assert np.array_equal(chunked, responsibility.astype(np.float32))


def test_chunks_share_one_scale() -> None:
    """The peak lies in one slab only; every slab must be scaled by it."""
    ledgers = _ledgers(800, 32)
    whole = normalise(build_map(ledgers, 1, (32, 32), MULTIPLICATIVE), MULTIPLICATIVE)
    chunked = build_map_chunked(ledgers, 1, (32, 32), MULTIPLICATIVE, chunk_elements=32 * 4)
    assert np.array_equal(chunked, whole.astype(np.float32))
    assert float(chunked[-1, -1]) == pytest.approx(0.5)


def test_many_iterations_end_to_end(tiny_cnn: Path, tiny_image: Path) -> None:
    """250 iterations on a 32 × 32 input gave an all-zero map (an infinite peak) before."""
    result = explain_sync(
        tiny_image, str(tiny_cnn), iters=300, seed=2, min_box_size=12, extract=False
    )
    responsibility = result.responsibility
    assert np.all(np.isfinite(responsibility))
    assert float(responsibility.max()) == pytest.approx(1.0)
    assert np.count_nonzero(responsibility) > responsibility.size // 2


def test_a_nan_map_is_refused() -> None:
    nan = Ledger.from_entries({(Box((0, 0), (4, 4)), 1): float("nan")}, 2)
    responsibility = normalise(build_map([nan], 1, (8, 8), MULTIPLICATIVE), MULTIPLICATIVE)
    with pytest.raises(RexStreamError, match="NaN or infinite values"):
        check_finite(responsibility, "photo")
    check_finite(np.zeros((8, 8)), "photo")  # a finite map passes
