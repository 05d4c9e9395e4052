"""Pictures of multiple explanations: ReX's ``composite`` (one picture, one colour per
explanation) and ``separate`` (``<stem>_<i><suffix>`` per explanation) styles."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rex_stream.result import Explanation


#: the qualitative colour map of composite pictures
MULTI_COLOURS = "tab10"


def render_multi(
    result: Explanation, path: Path, draw_one: Callable[[Explanation, Path], None]
) -> list[Path]:
    """Draw ``result``'s kept explanations at ``path`` as its ``multi_style`` says.

    Composite works on images (and greyscale images); the other modes draw each explanation
    in its own file with ``draw_one`` (the mode's picture:
    :func:`rex_stream.modes.render_explanation`), as ``separate`` does.
    """
    if result.multi is None or not result.multi.kept:
        return []
    composite = result.config.visual.multi_style == "composite"
    if composite and result.subject.mode in ("RGB", "L"):
        save_composite(result, path)
        return [path]
    written = []
    for number, found in enumerate(result.multi.kept):
        one = replace(result, sufficiency=found, multi=None)
        target = path.with_name(f"{path.stem}_{number}{path.suffix}")
        draw_one(one, target)
        written.append(target)
    return written


def explanation_colours(count: int, colormap: str) -> np.ndarray:
    """``count`` distinct RGB colours (uint8) from a matplotlib colormap."""
    from matplotlib import colormaps

    try:
        cmap = colormaps[colormap]
    except KeyError:
        cmap = colormaps["tab10"]
    if getattr(cmap, "N", 256) <= 20:  # a qualitative map: its own distinct colours in turn
        points: np.ndarray = np.arange(count) % cmap.N
    else:
        points = np.linspace(0.15, 0.85, count) if count > 1 else np.array([0.6])
    return (np.asarray(cmap(points))[:, :3] * 255).astype(np.uint8)


def save_composite(result: Explanation, path: Path) -> None:
    """The image at its own resolution, greyed outside every explanation; each explanation
    tinted and outlined in its own colour, titled with the class and listed in a legend with
    its area and confidence."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from rex_stream.pictures.image import (
        class_text,
        figure_for,
        legend_below,
        original_rgb,
        resize_map,
        rgb_fraction,
        save_figure,
    )

    assert result.multi is not None
    visual = result.config.visual
    image = original_rgb(result).astype(np.float32)
    size = image.shape[:2]
    masks = [
        resize_map(np.asarray(e.mask, np.float32), size, smooth=False) > 0.5
        for e in result.multi.kept
    ]
    union = np.any(masks, axis=0)
    grey = np.full_like(image, visual.colour)
    picture = np.where(union[:, :, None], image, visual.alpha * image + (1 - visual.alpha) * grey)
    # distinct colours, one per explanation (the heatmap's sequential map makes them alike)
    colours = explanation_colours(len(masks), MULTI_COLOURS).astype(np.float32)
    for mask, colour in zip(masks, colours):
        picture[mask] = 0.75 * picture[mask] + 0.25 * colour
        picture[_boundary(mask, max(1, round(max(size) / 300)))] = colour
    figure, axis = figure_for(image)
    try:
        axis.imshow(np.clip(picture, 0, 255).astype(np.uint8))
        axis.set_title(
            f"{class_text(result)}, confidence {result.target.confidence:.2f}: "
            f"{len(masks)} disjoint sufficient explanations",
            fontsize=10,
        )
        handles = [
            Patch(
                facecolor=rgb_fraction(colour),
                label=f"{number}: {found.area:.1%}, confidence {found.confidence:.2f}",
            )
            for number, (found, colour) in enumerate(zip(result.multi.kept, colours))
        ]
        legend_below(axis, handles, columns=min(3, len(handles)), fontsize=7)
        axis.axis("off")
        figure.tight_layout()
        save_figure(figure, path, dpi=150)
    finally:
        plt.close(figure)


def _boundary(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Elements of ``mask`` within ``width`` 4-neighbour steps of its outside."""
    inner = mask
    for _ in range(width):
        padded = np.pad(inner, 1, constant_values=False)
        inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner
