"""Scanning the rest for a disjoint explanation (``multi``, :mod:`rex_stream.causal.rest_scan`):
the input without the first explanation fails, a top-ranked part of it passes."""

from __future__ import annotations

import anyio
import numpy as np
import pytest

from rex_stream.adapters.python import PythonBackend
from rex_stream.causal.multi import MultiExplanation, extract_multi
from rex_stream.causal.rest_scan import grow, rest_candidates
from rex_stream.config import ExtractionConfig, MultiConfig, SchedulerConfig, ScoringConfig
from rex_stream.engine.scheduler import Scheduler
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target

A = (slice(2, 8), slice(2, 8))  # one object
B = (slice(14, 20), slice(14, 20))  # a second object
D = (slice(2, 8), slice(16, 22))  # context that pulls to class 0 unless both objects show


def _image() -> np.ndarray:
    image = np.zeros((1, 24, 24), np.float32)
    image[0][A] = 1.0
    image[0][B] = 1.0
    image[0][D] = 0.5
    return image


def _classify(batch: np.ndarray) -> np.ndarray:
    """Class 1 when both objects show, or one object shows and most of the context is hidden."""
    rows = batch[:, 0]
    a = np.all(rows[:, A[0], A[1]] == 1.0, axis=(1, 2))
    b = np.all(rows[:, B[0], B[1]] == 1.0, axis=(1, 2))
    context = np.mean(rows[:, D[0], D[1]] == 0.5, axis=(1, 2))
    one = (a & b) | ((a | b) & (context < 0.5))
    return np.stack([np.where(one, 0.1, 0.9), np.where(one, 0.9, 0.1)], axis=1).astype(np.float32)


def _map() -> np.ndarray:
    """A first, then B, then the context, then the rest (distinct values: no ties)."""
    responsibility = np.zeros((24, 24), np.float32)
    ramp = np.arange(36, dtype=np.float32).reshape(6, 6) / 100
    responsibility[A] = 100 - ramp
    responsibility[B] = 50 - ramp
    responsibility[D] = 10 - ramp
    return responsibility


def _multi(carriage: tuple[int, int] = (16, 2)) -> MultiExplanation:
    batch, inflight = carriage
    subject = Subject("scene", _image(), (1, 2), 0.0, "L")
    backend = PythonBackend(_classify, (1, 24, 24), max_batch=64)

    async def go() -> MultiExplanation:
        config = SchedulerConfig(max_batch=batch, max_inflight=inflight, linger_ms=0.0)
        async with Scheduler(backend, config) as scheduler:
            return await extract_multi(
                subject,
                _map(),
                Target(1, 0.9),
                scheduler,
                ExtractionConfig(chunk_size=1),
                MultiConfig(spotlights=1),
                ScoringConfig(),
                seed=0,
            )

    return anyio.run(go)


def test_grow_reaches_the_elements_within_city_block_distance() -> None:
    point = np.zeros((9, 9), bool)
    point[4, 4] = True
    grown = grow(point, 2)
    yy, xx = np.indices(point.shape)
    assert np.array_equal(grown, np.abs(yy - 4) + np.abs(xx - 4) <= 2)
    assert np.array_equal(grow(point, 0), point)


def test_rest_candidates_grow_and_keep_the_gap() -> None:
    kept = np.zeros((24, 24), bool)
    kept[A] = True
    candidates = rest_candidates(_map(), kept)
    assert {gap for gap, _ in candidates} == {0, 6, 12}
    for gap, mask in candidates:
        assert not np.any(mask & grow(kept, gap))
    sizes = [int(m.sum()) for gap, m in candidates if gap == 0]
    assert sizes == sorted(sizes) and sizes[-1] == 24 * 24 - 36


def test_a_part_of_the_rest_is_a_second_disjoint_sufficient_explanation() -> None:
    """The input without A still shows the context, so the plain rest search fails; the scan
    finds B (the top of the rest). Without the scan only A is kept."""
    multi = _multi()
    kept = [e.mask for e in multi.kept]
    assert len(kept) == 2
    assert not np.any(kept[0] & kept[1])
    image = _image()
    for mask in kept:  # each suffices alone, asked of the model itself
        shown = np.where(mask, image[0], 0.0)[None, None].astype(np.float32)
        assert int(_classify(shown).argmax()) == 1
    expected = np.zeros((24, 24), bool)
    expected[B] = True
    assert any(np.array_equal(mask, expected) for mask in kept)


@pytest.mark.parametrize("carriage", [(1, 1), (3, 4), (64, 2)])
def test_the_scan_does_not_depend_on_how_probes_are_carried(carriage: tuple[int, int]) -> None:
    reference, other = _multi(), _multi(carriage)
    assert [e.index for e in other.kept] == [e.index for e in reference.kept]
    for a, b in zip(reference.kept, other.kept):
        assert np.array_equal(a.mask, b.mask)
    assert other.queries == reference.queries
