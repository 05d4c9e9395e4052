"""Pictures of image explanations: ReX-style overlay and responsibility heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from rex_stream.errors import OutputError
from rex_stream.pictures.colour_bar import add_colour_bar, round_levels
from rex_stream.pictures.outline import draw_outline

if TYPE_CHECKING:
    from rex_stream.causal.complete import CompleteExplanation
    from rex_stream.result import Explanation

#: the outline of the (sufficient) explanation, and of a complete one's necessary part
EXPLANATION_COLOUR = "#00e5ff"
NECESSARY_COLOUR = "#ff2bd6"

_PICTURE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp"}


def display_rgb(explanation: Explanation) -> np.ndarray:
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


#: the longest side of a picture drawn at the original image's resolution
MAX_PICTURE_SIDE = 1024


def class_text(explanation: Explanation) -> str:
    """ "ladybug (301)" when the class has a name, else "class 301"."""
    index = explanation.target.classification
    name = explanation.label
    return f"{name} ({index})" if name else f"class {index}"


def rgb_fraction(colour: np.ndarray) -> tuple[float, float, float]:
    """An RGB colour of 0–255 values as matplotlib's 0–1 triple."""
    red, green, blue = (float(c) / 255 for c in colour[:3])
    return red, green, blue


def original_rgb(explanation: Explanation) -> np.ndarray:
    """The input at its own resolution and aspect ratio (EXIF orientation applied, at most
    ``MAX_PICTURE_SIDE`` pixels on its longest side), else the model-space picture."""
    source = explanation.subject.source
    if source and Path(source).suffix.lower() in _PICTURE_SUFFIXES:
        try:
            from PIL import ImageOps

            with Image.open(source) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")
            image.thumbnail((MAX_PICTURE_SIDE, MAX_PICTURE_SIDE))
            return np.asarray(image)
        except (OSError, ValueError, Image.DecompressionBombError):
            pass
    return display_rgb(explanation)


def resize_map(values: np.ndarray, shape: tuple[int, int], smooth: bool) -> np.ndarray:
    """A 2-D map or mask resized to (height, width): bilinear for maps, nearest for masks."""
    if values.shape == shape:
        return values
    resample = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    picture = Image.fromarray(np.asarray(values, np.float32), mode="F")
    return np.asarray(picture.resize((shape[1], shape[0]), resample))


def figure_for(image: np.ndarray) -> tuple[Any, Any]:
    """A matplotlib figure sized to the picture's aspect ratio, and its axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    height, width = image.shape[:2]
    scale = 6.0 / max(height, width)
    figure, axis = plt.subplots(figsize=(max(3.5, width * scale + 1.2), height * scale + 1.0))
    return figure, axis


def save_overlay(explanation: Explanation, path: Path) -> None:
    """The explanation in colour over the image greyed with ``colour`` and ``alpha``, drawn at
    the image's own resolution, titled with the class, its confidence and the explanation's
    area and confidence, with a legend."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    visual = explanation.config.visual
    image = original_rgb(explanation)
    mask = explanation.mask
    if mask is None:
        mask = np.ones(explanation.responsibility.shape[:2], bool)
    shown = resize_map(mask.astype(np.float32), image.shape[:2], smooth=False) > 0.5
    grey = np.full_like(image, visual.colour)
    hidden = Image.blend(Image.fromarray(grey), Image.fromarray(image), visual.alpha)
    picture = np.where(shown[:, :, None], image, np.asarray(hidden)).astype(np.uint8)
    figure, axis = figure_for(image)
    try:
        axis.imshow(picture)
        if shown.any() and not shown.all():
            draw_outline(axis, shown, EXPLANATION_COLOUR)
        axis.set_title(
            f"{class_text(explanation)}, confidence {explanation.target.confidence:.2f}",
            fontsize=11,
        )
        handles = [
            Patch(
                facecolor="none", edgecolor=EXPLANATION_COLOUR, label=_explanation_text(explanation)
            )
        ]
        complete = explanation.complete
        if complete is not None:
            necessary = complete.necessary.mask.astype(np.float32)
            draw_outline(
                axis,
                resize_map(necessary, image.shape[:2], smooth=False) > 0.5,
                NECESSARY_COLOUR,
                linewidth=2.0,
            )
            handles.append(
                Patch(facecolor="none", edgecolor=NECESSARY_COLOUR, label=_necessary_text(complete))
            )
        handles.append(
            Patch(
                facecolor=rgb_fraction(grey[0, 0]),
                alpha=1 - visual.alpha,
                label="hidden",
            )
        )
        legend_below(axis, handles, columns=2, fontsize=8)
        axis.axis("off")
        figure.tight_layout()
        save_figure(figure, path, dpi=150)
    finally:
        plt.close(figure)


def _necessary_text(complete: CompleteExplanation) -> str:
    """The legend line of a complete explanation's necessary part."""
    necessary = complete.necessary
    return (
        f"necessary part: {necessary.area:.1%} of the input; without it class "
        f"{complete.inverse_classification} ({complete.inverse_confidence:.2f})"
    )


def legend_below(axis: Any, handles: list[Any], columns: int, fontsize: int) -> None:
    """A frameless legend centred under a picture."""
    axis.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.01),
        ncol=columns,
        fontsize=fontsize,
        frameon=False,
    )


def _rgb(pixel: np.ndarray) -> tuple[float, float, float]:
    red, green, blue = (float(c) / 255 for c in pixel[:3])
    return red, green, blue


def _explanation_text(explanation: Explanation) -> str:
    sufficiency = explanation.sufficiency
    if sufficiency is None:
        return "no explanation extracted (-n)"
    return (
        f"explanation: {sufficiency.area:.1%} of the input, confidence {sufficiency.confidence:.2f}"
    )


def save_heatmap(explanation: Explanation, path: Path) -> None:
    """The responsibility map as filled contours over the image at its own resolution."""
    import matplotlib.pyplot as plt

    image = original_rgb(explanation)
    responsibility = resize_map(explanation.responsibility, image.shape[:2], smooth=True)
    figure, axis = figure_for(image)
    try:
        axis.imshow(image)
        low, high = float(responsibility.min()), float(responsibility.max())
        levels = round_levels(low, high, 14)  # bands and colour-bar ticks at round numbers
        # the lowest band stays clear, so the picture is not veiled where nothing is responsible
        shown = np.ma.masked_less_equal(responsibility, levels[1] if high > low else low)
        contours = axis.contourf(
            shown,
            levels=levels,
            cmap=explanation.config.visual.heatmap_colours,
            alpha=0.6,
        )
        add_colour_bar(figure, contours, axis, "causal responsibility (relative)")
        axis.set_title(
            f"responsibility for {class_text(explanation)}, "
            f"confidence {explanation.target.confidence:.2f}",
            fontsize=11,
        )
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
