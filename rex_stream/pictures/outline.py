"""Outlines of masks that close at the picture's edge."""

from __future__ import annotations

from typing import Any

import numpy as np


def draw_outline(axis: Any, mask: np.ndarray, colour: Any, linewidth: float = 1.5) -> None:
    """Outline the True region of the 2-D ``mask`` on ``axis`` (drawn with ``imshow`` in pixel
    coordinates). The mask is padded with one pixel of False first and the contour shifted
    back, so a region touching the border gets a closed line along the edge instead of an
    open curve that stops there."""
    shown = np.asarray(mask, bool)
    if not shown.any():
        return
    padded = np.pad(shown, 1, constant_values=False).astype(np.float32)
    rows = np.arange(-1, shown.shape[0] + 1)
    columns = np.arange(-1, shown.shape[1] + 1)
    limits = axis.get_xlim(), axis.get_ylim()
    axis.contour(columns, rows, padded, levels=[0.5], colors=[colour], linewidths=linewidth)
    axis.set_xlim(*limits[0])  # the padding must not widen the picture
    axis.set_ylim(*limits[1])
