"""Pictures of CEM solutions and L2X selections for any mode: input, regions, result."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rex_stream.cem import CemResult
from rex_stream.engine.subject import Subject
from rex_stream.pictures.image import save_figure


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
    draw(subject, mask, solution, result.name.replace("_", " "), title, path)


def save_selection(subject: Subject, selection: np.ndarray, title: str, path: Path) -> None:
    """Draw the input and the regions an L2X explainer selected (the rest at the baseline)."""
    base = np.broadcast_to(np.asarray(subject.baseline, subject.tensor.dtype), subject.tensor.shape)
    shown = np.where(subject.expand(selection.astype(bool)), subject.tensor, base)
    draw(subject, selection.astype(float), shown, "selected regions only", title, path)


def draw(
    subject: Subject, mask: np.ndarray, result: np.ndarray, label: str, title: str, path: Path
) -> None:
    """Input, region values and result: a line plot for 1-D inputs, three panels otherwise
    (a volume's slice with the most region value: where the explanation is)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    original, found = _spatial(subject, subject.tensor), _spatial(subject, result)
    if len(subject.spatial_shape) == 1:
        figure, axis = plt.subplots(figsize=(9, 3))
        positions = np.arange(subject.spatial_shape[0])
        axis.plot(positions, original[:, 0], color="0.6", lw=1, label="input")
        axis.plot(positions, found[:, 0], color="C3", lw=1, label=label)
        axis.fill_between(
            positions,
            0,
            1,
            where=mask > 0.05,
            color="C1",
            alpha=0.15,
            transform=axis.get_xaxis_transform(),
            label="regions used",
        )
        axis.legend(loc="upper right", fontsize=8)
        axis.set_title(title, fontsize=9)
    else:
        heading = "input"
        if len(subject.spatial_shape) == 3:
            weight = mask.reshape(mask.shape[0], -1).sum(axis=1)
            chosen = int(np.argmax(weight)) if weight.any() else mask.shape[0] // 2
            original, found, mask = original[chosen], found[chosen], mask[chosen]
            heading = f"input (slice {chosen})"
        figure, axes = plt.subplots(1, 3, figsize=(10, 3.6))
        for axis, picture, name in (
            (axes[0], _picture(original), heading),
            (axes[1], mask, "region values"),
            (axes[2], _picture(found), title),
        ):
            scale = {"vmin": 0.0, "vmax": 1.0} if picture is mask else {}
            axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None, **scale)
            axis.set_title(name, fontsize=9)
            axis.axis("off")
    try:
        save_figure(figure, path)
    finally:
        plt.close(figure)
