"""Geometry invariants: children tile the parent exactly, never overlap, respect the limits."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rex_stream.config import Distribution
from rex_stream.engine.geometry import SUBSETS, Box, can_split, root_box, split_box

shapes = st.one_of(
    st.tuples(st.integers(4, 400)),
    st.tuples(st.integers(2, 120), st.integers(2, 120)),
    st.tuples(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40)),
)


def _coverage(shape: tuple[int, ...], boxes: tuple[Box, ...]) -> np.ndarray:
    counts = np.zeros(shape, np.int32)
    for box in boxes:
        counts[box.slices] += 1
    return counts


@settings(max_examples=200, deadline=None)
@given(
    shape=shapes,
    seed=st.integers(0, 2**32 - 1),
    distribution=st.sampled_from(list(Distribution)),
)
def test_children_tile_the_parent_exactly(
    shape: tuple[int, ...], seed: int, distribution: Distribution
) -> None:
    box = root_box(shape)
    if not can_split(box, 1):
        return
    weights = (
        np.random.default_rng(seed).random(shape) if distribution is Distribution.ADAPTIVE else None
    )
    children = split_box(box, np.random.default_rng(seed), distribution, (2.0, 3.0), weights)
    assert len(children) == 4
    assert np.all(_coverage(shape, children) == 1)  # exact tiling: no gap, no overlap
    assert all(child.area > 0 for child in children)
    assert sum(child.area for child in children) == box.area
    assert [child.path for child in children] == [(0,), (1,), (2,), (3,)]
    assert all(child.depth == 1 for child in children)


@settings(max_examples=100, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**32 - 1), min_size=st.integers(1, 500))
def test_recursive_splits_respect_min_box_size(
    shape: tuple[int, ...], seed: int, min_size: int
) -> None:
    rng = np.random.default_rng(seed)
    frontier = [root_box(shape)]
    leaves = []
    for _ in range(4):
        next_frontier = []
        for box in frontier:
            if can_split(box, min_size):
                next_frontier.extend(split_box(box, rng))
            else:
                leaves.append(box)
                assert box.area < min_size or box.area == 0 or not can_split(box, 1)
        frontier = next_frontier
    leaves.extend(frontier)
    assert np.all(_coverage(shape, tuple(leaves)) == 1)


def test_split_is_a_pure_function_of_the_generator() -> None:
    box = root_box((50, 70))
    first = split_box(box, np.random.default_rng(3))
    second = split_box(box, np.random.default_rng(3))
    assert first == second


def test_the_fourteen_subsets() -> None:
    assert len(SUBSETS) == 14
    assert len(set(SUBSETS)) == 14
    expected = {c for k in (1, 2, 3) for c in itertools.combinations(range(4), k)}
    assert set(SUBSETS) == expected
    assert [len(s) for s in SUBSETS] == [1] * 4 + [2] * 6 + [3] * 4


def test_unsplittable_boxes() -> None:
    assert not can_split(root_box((3,)), 1)
    assert not can_split(root_box((1, 50)), 1)
    assert not can_split(root_box((1, 1, 9)), 1)
    assert can_split(root_box((1, 2, 2)), 1)
    assert not can_split(root_box((10, 10)), 101)
