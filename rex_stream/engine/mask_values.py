"""Mask values: a constant for the whole run, or ReX 0.4.1's per-iteration sweeps.

``random`` and ``linear`` give every iteration of the search its own mask value between the
input's minimum and maximum (in model space), as ReX 0.4.1 does:

- ``random``: iteration ``i`` (0-based) draws ``uniform(min, max)`` as the first draw of
  numpy's legacy generator seeded with ``seed + i + 1`` (ReX seeds ``np.random`` with
  ``seed + process`` for process ``1..iters`` and draws the value first), so a seeded run
  uses ReX's very values;
- ``linear``: iteration ``i`` takes ``linspace(min, max, iters)[i]``, so the values depend
  on the number of iterations.

Everything outside the search (target, baseline check, extraction, insertion/deletion)
masks with the input's mean. ReX 0.4.1 instead keeps whatever value its last iteration set
(for ``linear``: the input's maximum), an accident of its shared state.
"""

from __future__ import annotations

import numpy as np

#: Mask values drawn per iteration.
SWEEPS = ("random", "linear")

#: Every string mask value a run accepts.
NAMED = ("min", "mean", *SWEEPS)


def constant_mask_value(values: np.ndarray, mask_value: float | str) -> float:
    """The one value masked elements take outside the search: a number, or the input's
    ``min`` or ``mean`` (also the mean for a per-iteration sweep)."""
    if mask_value == "min":
        return float(values.min())
    if mask_value in ("mean", *SWEEPS):
        return float(values.mean())
    return float(mask_value)


def swept_mask_value(
    kind: str, index: int, iters: int, seed: int, low: float, high: float
) -> float:
    """Iteration ``index``'s mask value in a ``random`` or ``linear`` sweep over [low, high]."""
    if kind == "random":
        # ReX: np.random.seed(seed + process); np.random.uniform(lower, upper)
        legacy = np.random.RandomState((seed + index + 1) % 2**32)
        return float(legacy.uniform(low, high))
    if kind == "linear":
        return float(np.linspace(low, high, iters)[index])
    raise ValueError(f"not a mask-value sweep: {kind!r}")


def sweep_range(values: np.ndarray) -> tuple[float, float]:
    """The interval a sweep covers: the input's minimum and maximum."""
    return float(values.min()), float(values.max())
