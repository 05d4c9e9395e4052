"""Boxes over an input's spatial axes and their random 4-way partition, for 1-, 2- and 3-D alike.

A box is a plain value: its start and stop on each spatial axis and its path from the root
(child indices), which is also its identity. Splitting is a pure function of the box and a
random generator, so a box never needs to be looked up in a tree.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property
from math import prod

import numpy as np

from rex_stream.config import Distribution

#: The 14 non-empty proper subsets of the 4 children, in ReX's order (singles, pairs, triples).
SUBSETS: tuple[tuple[int, ...], ...] = tuple(
    combo for size in (1, 2, 3) for combo in itertools.combinations(range(4), size)
)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box, ``[start, stop)`` on each spatial axis, named by its path."""

    start: tuple[int, ...]
    stop: tuple[int, ...]
    path: tuple[int, ...] = ()

    @property
    def depth(self) -> int:
        """Distance from the root box (the root has depth 0)."""
        return len(self.path)

    @cached_property  # boxes are immutable; searches ask for these thousands of times
    def shape(self) -> tuple[int, ...]:
        """Extent on each spatial axis."""
        return tuple(b - a for a, b in zip(self.start, self.stop))

    @cached_property
    def area(self) -> int:
        """Number of spatial elements (pixels, samples, voxels) inside the box."""
        return prod(self.shape)

    @property
    def slices(self) -> tuple[slice, ...]:
        """Index the box's region of an array whose leading axes are the spatial ones."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    def child(self, index: int, start: tuple[int, ...], stop: tuple[int, ...]) -> Box:
        """A sub-box of this one, named as its ``index``-th child."""
        return Box(start, stop, (*self.path, index))


def root_box(spatial_shape: tuple[int, ...]) -> Box:
    """The box covering the whole input."""
    return Box(tuple(0 for _ in spatial_shape), tuple(spatial_shape), ())


def can_split(box: Box, min_box_size: int) -> bool:
    """Whether ``box`` is large enough to split into 4 non-empty children."""
    if box.area < min_box_size:
        return False
    shape = box.shape
    if len(shape) == 1:
        return shape[0] >= 4
    return sum(1 for extent in shape if extent >= 2) >= 2


def split_box(
    box: Box,
    rng: np.random.Generator,
    distribution: Distribution = Distribution.UNIFORM,
    distribution_args: tuple[float, float] | None = None,
    weights: np.ndarray | None = None,
) -> tuple[Box, Box, Box, Box]:
    """Split ``box`` into 4 non-empty children that tile it exactly.

    1-D: three distinct cut points; 2-D: one point (a cut on each axis); 3-D: two axes chosen
    at random, one cut each. ``weights`` (the responsibility map over the box's region) drives
    the adaptive distribution. Call only when :func:`can_split` holds.
    """
    shape = box.shape
    if len(shape) == 1:
        cuts = _draw_cuts(shape[0], 3, rng, distribution, distribution_args, _marginal(weights, 0))
        edges = [box.start[0], *(box.start[0] + c for c in cuts), box.stop[0]]
        parts = [box.child(i, (edges[i],), (edges[i + 1],)) for i in range(4)]
        return parts[0], parts[1], parts[2], parts[3]

    splittable = [axis for axis, extent in enumerate(shape) if extent >= 2]
    if len(shape) == 2:
        axes = [0, 1]
    else:
        axes = sorted(int(a) for a in rng.choice(splittable, size=2, replace=False))
    cut_at = {
        axis: box.start[axis]
        + _draw_cuts(
            shape[axis], 1, rng, distribution, distribution_args, _marginal(weights, axis)
        )[0]
        for axis in axes
    }
    children: list[Box] = []
    for index, (low_first, low_second) in enumerate(itertools.product((True, False), repeat=2)):
        start, stop = list(box.start), list(box.stop)
        for axis, low in zip(axes, (low_first, low_second)):
            if low:
                stop[axis] = cut_at[axis]
            else:
                start[axis] = cut_at[axis]
        children.append(box.child(index, tuple(start), tuple(stop)))
    return children[0], children[1], children[2], children[3]


def _marginal(weights: np.ndarray | None, axis: int) -> np.ndarray | None:
    """Sum a box's weights over every axis but ``axis``."""
    if weights is None:
        return None
    others = tuple(a for a in range(weights.ndim) if a != axis)
    return np.asarray(weights, dtype=np.float64).sum(axis=others) if others else weights


def _draw_cuts(
    extent: int,
    count: int,
    rng: np.random.Generator,
    distribution: Distribution,
    distribution_args: tuple[float, float] | None,
    marginal: np.ndarray | None,
) -> list[int]:
    """Draw ``count`` distinct cut offsets in ``[1, extent - 1]``, sorted."""
    candidates = np.arange(1, extent)
    if distribution is Distribution.BETABINOM:
        alpha, beta = distribution_args or (1.1, 1.1)
        cuts: set[int] = set()
        while len(cuts) < count:
            p = rng.beta(alpha, beta)
            cuts.add(1 + int(rng.binomial(extent - 2, p)))
        return sorted(cuts)
    if distribution is Distribution.ADAPTIVE and marginal is not None:
        # a cut at offset c separates element c-1 from c: weight it by the mass beside it
        mass = np.asarray(marginal, dtype=np.float64)[1:] + 1e-12
        if np.isfinite(mass).all() and mass.sum() > 0:
            picked = rng.choice(candidates, size=count, replace=False, p=mass / mass.sum())
            return sorted(int(c) for c in picked)
    picked = rng.choice(candidates, size=count, replace=False)
    return sorted(int(c) for c in picked)
