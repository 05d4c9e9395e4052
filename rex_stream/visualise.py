"""Pictures of image explanations: ReX-style overlay and responsibility heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from rex_stream.errors import OutputError

if TYPE_CHECKING:
    from rex_stream.result import Explanation


def _display_rgb(explanation: Explanation) -> np.ndarray:
    """The input as an (H, W, 3) uint8 picture."""
    display = explanation.subject.display
    if display is None:
        tensor = explanation.subject.tensor
        axes = explanation.subject.spatial_axes
        channels = [a for a in range(tensor.ndim) if a not in axes]
        picture = (
            np.moveaxis(tensor, channels, list(range(2, 2 + len(channels)))) if channels else tensor
        )
        picture = picture.reshape(*explanation.subject.spatial_shape, -1)[:, :, :3]
        low, high = float(picture.min()), float(picture.max())
        display = ((picture - low) / (high - low + 1e-12) * 255).astype(np.uint8)
    if display.ndim == 2:
        display = display[:, :, None]
    if display.shape[2] == 1:
        display = np.repeat(display, 3, axis=2)
    return display


def save_overlay(explanation: Explanation, path: Path) -> None:
    """The explanation in colour over the image greyed with ``colour`` and ``alpha``."""
    visual = explanation.config.visual
    image = _display_rgb(explanation)
    mask = explanation.mask
    if mask is None:
        mask = np.ones(image.shape[:2], bool)
    grey = np.full_like(image, visual.colour)
    hidden = Image.blend(Image.fromarray(grey), Image.fromarray(image), visual.alpha)
    picture = np.where(mask[:, :, None], image, np.asarray(hidden))
    _save(Image.fromarray(picture.astype(np.uint8)), path)


def save_heatmap(explanation: Explanation, path: Path) -> None:
    """The responsibility map as filled contours over the image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = _display_rgb(explanation)
    responsibility = explanation.responsibility
    figure, axis = plt.subplots(figsize=(5, 5 * image.shape[0] / image.shape[1]))
    try:
        axis.imshow(image)
        levels = np.linspace(float(responsibility.min()), float(responsibility.max()) + 1e-12, 15)
        contours = axis.contourf(
            responsibility,
            levels=levels,
            cmap=explanation.config.visual.heatmap_colours,
            alpha=0.6,
        )
        figure.colorbar(contours, ax=axis, fraction=0.046, pad=0.04)
        axis.set_title(f"responsibility for class {explanation.target.classification}")
        axis.axis("off")
        figure.tight_layout()
        save_figure(figure, path, dpi=150)
    finally:
        plt.close(figure)


def save_figure(figure: Any, path: Path, dpi: int | None = None) -> None:
    """Save a matplotlib figure; a path that cannot be written is an OutputError."""
    try:
        figure.savefig(path, dpi=dpi)
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc


def _save(image: Image.Image, path: Path) -> None:
    try:
        image.save(path)
    except (OSError, ValueError, KeyError) as exc:
        raise OutputError(f"cannot write {path}: {exc}") from exc
