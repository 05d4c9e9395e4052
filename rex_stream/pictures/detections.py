"""Pictures of detection explanations: the photo at its own size with each target's box and
explanation in its own colour (one target, or every one with ``--all-detections``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rex_stream.pictures.image import (
    figure_for,
    legend_below,
    original_rgb,
    resize_map,
    save_figure,
)
from rex_stream.pictures.outline import draw_outline
from rex_stream.result import Explanation

#: one colour per target, in turn (matplotlib's tab10 without its greys)
COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
)


@dataclass(frozen=True)
class DrawnTarget:
    """One target to draw: its box in the photo's pixels (x0, y0, x1, y1), a label, and its
    explanation (whose mask is in the model's pixels)."""

    box: tuple[float, float, float, float]
    label: str
    explanation: Explanation


def save_detections(targets: Sequence[DrawnTarget], path: Path, title: str) -> None:
    """The photo, dimmed outside the explanations, each target's explanation outlined and
    tinted and its box drawn in the target's colour, with a legend."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    image = original_rgb(targets[0].explanation)
    height, width = image.shape[:2]
    masks = shown_regions(targets, (height, width))
    shown_any = np.zeros((height, width), bool)
    for regions in masks:
        for shown in regions:
            shown_any |= shown
    dimmed = np.asarray(
        Image.blend(Image.fromarray(np.zeros_like(image)), Image.fromarray(image), 0.35)
    )
    picture = np.where(shown_any[:, :, None], image, dimmed).astype(np.uint8)
    photo = _photo_scale(targets[0].explanation, image.shape[:2])
    figure, axis = figure_for(image)
    try:
        axis.imshow(picture)
        handles = []
        for number, (target, regions) in enumerate(zip(targets, masks)):
            colour = COLOURS[number % len(COLOURS)]
            for spotlight, shown in enumerate(regions):  # the first explanation drawn boldest
                draw_outline(axis, shown, colour, linewidth=1.5 if spotlight == 0 else 1.0)
            x0, y0, x1, y1 = (v * s for v, s in zip(target.box, photo * 2))
            axis.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=2)
            )
            label = target.label
            if len(regions) > 1:
                label = f"{label} ({len(regions)} explanations)"
            handles.append(Patch(facecolor="none", edgecolor=colour, label=label))
        axis.set_title(title, fontsize=11)
        legend_below(axis, handles, columns=min(3, len(handles)), fontsize=8)
        axis.axis("off")
        figure.tight_layout()
        save_figure(figure, path, dpi=150)
    finally:
        plt.close(figure)


def spotlight_masks(explanation: Explanation) -> list[np.ndarray]:
    """Every explanation of a target (model pixels): each spotlight ``--multi`` kept, else
    its one explanation (none when nothing was extracted)."""
    multi = explanation.multi
    if multi is not None and multi.kept:
        return [np.asarray(kept.mask, bool) for kept in multi.kept]
    return [] if explanation.mask is None else [np.asarray(explanation.mask, bool)]


def shown_regions(targets: Sequence[DrawnTarget], size: tuple[int, int]) -> list[list[np.ndarray]]:
    """Each target's explanations at the picture's ``size`` (rows, columns)."""
    return [
        [
            resize_map(mask.astype(np.float32), size, smooth=False) > 0.5
            for mask in spotlight_masks(target.explanation)
        ]
        for target in targets
    ]


def _photo_scale(explanation: Explanation, drawn: tuple[int, int]) -> tuple[float, float]:
    """Drawn pixels per photo pixel (x, y): the picture is the photo, at most 1024 pixels on
    its longest side."""
    source = explanation.subject.source
    if source and Path(source).suffix.lower() != ".npy":
        try:
            from PIL import ImageOps

            with Image.open(source) as opened:
                width, height = ImageOps.exif_transpose(opened).size
            return (drawn[1] / width, drawn[0] / height)
        except (OSError, ValueError):
            pass
    rows, cols = explanation.subject.spatial_shape[-2:]
    return (drawn[1] / cols, drawn[0] / rows)
