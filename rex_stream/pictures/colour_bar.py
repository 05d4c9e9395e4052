"""Colour bars with round ticks (0, 0.25, 0.5 …, never 0.0137)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: the steps a tick interval may take (times a power of ten)
ROUND_STEPS = [1, 2, 2.5, 5, 10]


def round_levels(low: float, high: float, count: int = 12) -> np.ndarray:
    """About ``count`` contour levels at round numbers covering ``[low, high]``."""
    from matplotlib.ticker import MaxNLocator

    if not high > low:
        high = low + 1.0
    levels = MaxNLocator(nbins=count, steps=ROUND_STEPS).tick_values(low, high)
    return np.asarray(levels, np.float64)


def add_colour_bar(figure: Any, mappable: Any, axis: Any, label: str, ticks: int = 6) -> Any:
    """A colour bar beside ``axis`` for ``mappable``, labelled, its ticks at round numbers."""
    from matplotlib.ticker import MaxNLocator

    bar = figure.colorbar(mappable, ax=axis, fraction=0.046, pad=0.04)
    bar.locator = MaxNLocator(nbins=ticks, steps=ROUND_STEPS)
    bar.update_ticks()
    bar.set_label(label)
    return bar
