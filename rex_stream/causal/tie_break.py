"""Breaking the ties of a responsibility map by its neighbourhood.

A map built from box ledgers is piecewise constant: after 20 iterations a photo's map has a few
hundred distinct values, and whole boxes of elements share one. Ranked alone, a tie is broken by
element index (raster order), so the first elements revealed of a tied box are its last rows,
wherever the responsible object lies. Ranking ties by the map's local mean instead reveals
first the elements surrounded by more responsibility: the part of a box that touches the
object. The order between distinct values is kept exactly; only ties are reordered.
"""

from __future__ import annotations

import numpy as np


def box_mean(values: np.ndarray, radius: int) -> np.ndarray:
    """The mean of ``values`` over a ``(2·radius + 1)``-wide cube around each element (numpy
    only: one cumulative sum per axis; the window is clipped at the edges)."""
    out = np.asarray(values, np.float64)
    for axis in range(out.ndim):
        n = out.shape[axis]
        padded = np.cumsum(out, axis=axis)
        zero = np.zeros_like(np.take(padded, [0], axis=axis))
        padded = np.concatenate([zero, padded], axis=axis)
        index = np.arange(n)
        high = np.minimum(index + radius + 1, n)
        low = np.maximum(index - radius, 0)
        total = np.take(padded, high, axis=axis) - np.take(padded, low, axis=axis)
        shape = [1] * out.ndim
        shape[axis] = n
        out = total / (high - low).reshape(shape)
    return out


def break_ties(responsibility: np.ndarray, radius: int) -> np.ndarray:
    """``responsibility`` with its ties ranked by the local mean over ``radius`` elements.

    An element tied at value ``v`` gains up to 0.45 of the gap to the next higher value of the
    map (the highest value: of the gap below it), in proportion to its neighbourhood's mean
    (twice box-smoothed: a near-Gaussian weight), so every element above another stays above
    it and tied elements are ordered by their neighbourhood. Gaps are taken value by value, so
    the order survives a float32 map wherever float32 can tell the two values apart. Returns
    float64; ``radius`` 0 or a map without ties comes back unchanged in value.
    """
    values = np.asarray(responsibility, np.float64)
    if radius <= 0 or values.size < 2:
        return values
    distinct, level = np.unique(values, return_inverse=True)
    if distinct.size == values.size:
        return values
    if distinct.size > 1:
        gaps = np.diff(distinct)
        gap_up = np.append(gaps, gaps[-1])
    else:
        gap_up = np.ones(1)
    local = box_mean(box_mean(values, radius), radius)
    span = float(local.max() - local.min())
    if span <= 0 or not np.isfinite(span):
        return values
    share = (local - local.min()) / span  # in [0, 1]
    return values + share * (0.45 * gap_up[level.reshape(values.shape)])
