"""``--surface [FILE]``: the responsibility map as a 3-D surface (matplotlib), the picture on
its floor, as ReX draws it; a 1-D map is a line, a 3-D map the surface of its peak slice.

Without FILE ReX opens an interactive window; here that happens only when a display exists,
otherwise the run stops before it starts with one line saying so."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rex_stream.result import Explanation

SHOW = "show"
SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def has_display() -> bool:
    """Whether a window can be opened (X11/Wayland, or a desktop OS)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def render_surface(result: Explanation, target: str) -> str | None:
    """Draw the surface; returns the file written (None when shown in a window)."""
    import matplotlib

    if target != SHOW:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    responsibility = np.asarray(result.responsibility, np.float64)
    label = result.label
    cls = result.target.classification
    title = f"{label} ({cls})" if label else f"class {cls}"
    if responsibility.ndim == 1:
        figure, axis = plt.subplots(figsize=(8, 3))
        axis.plot(responsibility)
        axis.set_xlabel("element")
        axis.set_ylabel("responsibility")
    else:
        if responsibility.ndim == 3:
            peak = np.unravel_index(int(np.argmax(responsibility)), responsibility.shape)
            responsibility = responsibility[peak[0]]
            title += f", slice {peak[0]} of axis 0"
        figure = plt.figure(figsize=(7, 6))
        axis = figure.add_subplot(projection="3d")
        rows, cols = responsibility.shape
        y, x = np.mgrid[0:rows, 0:cols]
        floor = float(responsibility.min())
        picture = _floor_picture(result, responsibility.shape)
        if picture is not None:
            axis.plot_surface(
                x,
                y,
                np.full_like(responsibility, floor),
                facecolors=picture,
                shade=False,
                rstride=max(1, rows // 100),
                cstride=max(1, cols // 100),
            )
        axis.plot_surface(
            x,
            y,
            responsibility,
            cmap=result.config.visual.heatmap_colours,
            alpha=0.8,
            rstride=max(1, rows // 100),
            cstride=max(1, cols // 100),
            linewidth=0,
        )
        top = np.unravel_index(int(np.argmax(responsibility)), responsibility.shape)
        title += f"; max {responsibility.max():.3g} at x={int(top[1])}, y={int(top[0])}"
        axis.set_xlabel("x")
        axis.set_ylabel("y")
        axis.set_zlabel("responsibility")
        axis.invert_yaxis()
    axis.set_title(title)
    try:
        if target == SHOW:
            plt.show()
            return None
        from rex_stream.pictures.image import save_figure

        save_figure(figure, Path(target), dpi=120)
        return target
    finally:
        plt.close(figure)


def _floor_picture(result: Explanation, shape: tuple[int, ...]) -> np.ndarray | None:
    """The input as an RGB float picture of the map's shape, or None (not an image)."""
    if result.subject.mode not in ("RGB", "L"):
        return None
    from rex_stream.pictures.image import display_rgb

    picture = display_rgb(result)
    if picture.shape[:2] != tuple(shape):
        return None
    return picture.astype(np.float64) / 255.0
