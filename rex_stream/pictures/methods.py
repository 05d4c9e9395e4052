"""Pictures of CEM solutions and L2X selections for any mode: input, regions, result.

A table's features are named by their columns; region values always carry a colour bar."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rex_stream.cem import CemResult
from rex_stream.cem.result import feature_names
from rex_stream.engine.subject import Subject
from rex_stream.pictures.colour_bar import add_colour_bar
from rex_stream.pictures.image import save_figure

#: the colour map of region values (0 = untouched or not selected)
REGION_COLOURS = "YlOrRd"
#: the most features a table's picture lists (the largest region values first)
MAX_FEATURES_SHOWN = 30

#: what a region value means, per CEM kind (array name) and for an L2X selection
VALUE_MEANINGS = {
    "pertinent_positive": "share of the region kept (1 = all of it)",
    "pertinent_negative": "share of the region moved toward the reference",
    "l2x": "selected (1) or not (0)",
}


@dataclass(frozen=True)
class Drawing:
    """What one picture shows: the region values over the spatial axes, the result in model
    space, what the result is called and what a region value means, and its title."""

    mask: np.ndarray
    result: np.ndarray
    label: str
    meaning: str
    title: str


def _spatial(subject: Subject, tensor: np.ndarray) -> np.ndarray:
    """``tensor`` with its spatial axes first and its channels last, as (*spatial, channels)."""
    axes = subject.spatial_axes
    channels = [a for a in range(tensor.ndim) if a not in axes]
    moved = np.moveaxis(tensor, [*axes, *channels], list(range(tensor.ndim)))
    return moved.reshape(*subject.spatial_shape, -1)


def _picture(values: np.ndarray) -> np.ndarray:
    """(H, W, C) values scaled to [0, 1] for display (first three channels, or grey)."""
    values = values[..., :3] if values.shape[-1] >= 3 else values[..., :1]
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low + 1e-12)
    return scaled if scaled.shape[-1] == 3 else scaled[..., 0]


def save_solution(result: CemResult, path: Path) -> None:
    """Draw the input and its pertinent positive or negative side by side."""
    subject = result.subject
    solution = result.solution if result.solution is not None else subject.tensor
    mask = result.mask if result.mask is not None else np.zeros(subject.spatial_shape)
    title = f"{result.name.replace('_', ' ')}: class {result.solution_class}"
    drawing = Drawing(
        mask, solution, result.name.replace("_", " "), VALUE_MEANINGS[result.name], title
    )
    draw(subject, drawing, path)


def save_selection(subject: Subject, selection: np.ndarray, title: str, path: Path) -> None:
    """Draw the input and the regions an L2X explainer selected (the rest at the baseline)."""
    base = np.broadcast_to(np.asarray(subject.baseline, subject.tensor.dtype), subject.tensor.shape)
    shown = np.where(subject.expand(selection.astype(bool)), subject.tensor, base)
    drawing = Drawing(
        selection.astype(float), shown, "selected regions only", VALUE_MEANINGS["l2x"], title
    )
    draw(subject, drawing, path)


def draw(subject: Subject, drawing: Drawing, path: Path) -> None:
    """Input, region values and result: bars named by column for a table, a line plot over a
    strip of region values for other 1-D inputs, three panels otherwise (a volume's slice with
    the most region value: where the explanation is)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = feature_names(subject)
    if names:
        figure = _draw_table(subject, drawing, names)
    elif len(subject.spatial_shape) == 1:
        figure = _draw_signal(subject, drawing)
    else:
        figure = _draw_panels(subject, drawing)
    try:
        figure.tight_layout()
        save_figure(figure, path, dpi=120)
    finally:
        plt.close(figure)


def _region_norm() -> Any:
    """Region values on a fixed 0–1 scale, so pictures of different inputs compare."""
    from matplotlib.colors import Normalize

    return Normalize(vmin=0.0, vmax=1.0)


def _draw_table(subject: Subject, drawing: Drawing, names: tuple[str, ...]) -> Any:
    """One bar per column (the largest region values first), each named with the input's
    value and the result's where they differ, coloured by its region value."""
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable

    original = _spatial(subject, subject.tensor)[:, 0]
    found = _spatial(subject, drawing.result)[:, 0]
    mask = np.asarray(drawing.mask, np.float64).reshape(-1)
    order = np.argsort(-mask, kind="stable")[:MAX_FEATURES_SHOWN]
    norm, colours = _region_norm(), plt.get_cmap(REGION_COLOURS)
    figure, axis = plt.subplots(figsize=(8, 1.2 + 0.28 * len(order)))
    positions = np.arange(len(order))[::-1]
    axis.barh(positions, mask[order], color=colours(norm(mask[order])))
    labels = []
    for i in order:
        changed = not np.isclose(original[i], found[i])
        value = f"{original[i]:.3g} → {found[i]:.3g}" if changed else f"{original[i]:.3g}"
        labels.append(f"{names[i]} = {value}")
    axis.set_yticks(positions)
    axis.set_yticklabels(labels, fontsize=7)
    axis.set_xlim(0, 1.05)
    axis.set_xlabel(drawing.meaning, fontsize=8)
    left_out = len(names) - len(order)
    note = f" (top {len(order)} of {len(names)} features)" if left_out > 0 else ""
    axis.set_title(f"{subject.name}: {drawing.title}{note}", fontsize=9)
    mappable = ScalarMappable(norm=norm, cmap=colours)
    add_colour_bar(figure, mappable, axis, "region value")
    return figure


def _draw_signal(subject: Subject, drawing: Drawing) -> Any:
    """The input and the result as lines over a strip of the region values."""
    import matplotlib.pyplot as plt

    original = _spatial(subject, subject.tensor)[:, 0]
    found = _spatial(subject, drawing.result)[:, 0]
    mask = np.asarray(drawing.mask, np.float64).reshape(-1)
    figure, axis = plt.subplots(figsize=(9, 3.2))
    positions = np.arange(subject.spatial_shape[0])
    low = float(min(original.min(), found.min()))
    high = float(max(original.max(), found.max()))
    strip = axis.imshow(
        mask[None, :],
        aspect="auto",
        extent=(-0.5, positions[-1] + 0.5, low, high if high > low else low + 1),
        cmap=REGION_COLOURS,
        norm=_region_norm(),
        alpha=0.5,
        interpolation="nearest",
    )
    axis.plot(positions, original, color="0.4", lw=1, label="input")
    axis.plot(positions, found, color="C3", lw=1, label=drawing.label)
    axis.legend(loc="upper right", fontsize=8)
    axis.set_title(drawing.title, fontsize=9)
    add_colour_bar(figure, strip, axis, drawing.meaning)
    return figure


def _draw_panels(subject: Subject, drawing: Drawing) -> Any:
    """Input, region values (with their colour bar) and the result, side by side."""
    import matplotlib.pyplot as plt

    original, found = _spatial(subject, subject.tensor), _spatial(subject, drawing.result)
    mask = np.asarray(drawing.mask, np.float64)
    heading = "input"
    if len(subject.spatial_shape) == 3:
        weight = mask.reshape(mask.shape[0], -1).sum(axis=1)
        chosen = int(np.argmax(weight)) if weight.any() else mask.shape[0] // 2
        original, found, mask = original[chosen], found[chosen], mask[chosen]
        heading = f"input (slice {chosen})"
    figure, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    for axis, picture, name in (
        (axes[0], _picture(original), heading),
        (axes[2], _picture(found), drawing.title),
    ):
        axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        axis.set_title(name, fontsize=9)
        axis.axis("off")
    regions = axes[1].imshow(
        mask, cmap=REGION_COLOURS, norm=_region_norm(), interpolation="nearest"
    )
    axes[1].set_title("region values", fontsize=9)
    axes[1].axis("off")
    add_colour_bar(figure, regions, axes[1], drawing.meaning)
    return figure
