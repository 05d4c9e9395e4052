"""Small, fast pictures for reports: photos, overlays, heatmaps and thumbnails as data URIs.

Drawn with numpy and Pillow only (no matplotlib figure per picture), so a report of thousands of
inputs builds in seconds; the colours follow the mode pictures (the ``inferno`` heatmap of
:mod:`rex_stream.pictures.image`, one colour per ``--multi`` explanation).
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache
from pathlib import Path

import numpy as np

#: The colours of ``--multi`` explanations, in order (the first is the global explanation's).
MULTI_COLOURS = (
    (255, 214, 10),
    (0, 190, 255),
    (255, 80, 160),
    (110, 230, 90),
    (255, 140, 0),
    (170, 120, 255),
    (0, 230, 200),
    (240, 60, 60),
)


@lru_cache(maxsize=4)
def colour_table(name: str = "inferno") -> np.ndarray:
    """A (256, 3) uint8 lookup table of a matplotlib colormap."""
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def fit_size(shape: tuple[int, int], max_side: int) -> tuple[int, int]:
    """(height, width) of a picture of ``shape`` scaled so its longer side is ``max_side``."""
    height, width = shape
    scale = max_side / max(height, width, 1)
    return max(1, round(height * scale)), max(1, round(width * scale))


def read_photo(path: str | Path, max_side: int) -> np.ndarray | None:
    """The picture at ``path`` upright, RGB uint8, its longer side ``max_side`` (small
    pictures enlarged without smoothing); None when it is not there or not a picture."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            # a JPEG is decoded at the smallest 1/2, 1/4 or 1/8 scale still larger than the
            # picture drawn (draft), which is most of the time of a report of photos
            height, width = fit_size((image.height, image.width), max_side)
            image.draft("RGB", (width, height))
            upright = ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    height, width = fit_size((upright.height, upright.width), max_side)
    if max(upright.height, upright.width) != max_side:
        larger = max(upright.height, upright.width) < max_side
        method = Image.Resampling.NEAREST if larger else Image.Resampling.LANCZOS
        upright = upright.resize((width, height), method, reducing_gap=None if larger else 2.0)
    return np.asarray(upright)


def resize(values: np.ndarray, shape: tuple[int, int], smooth: bool) -> np.ndarray:
    """A 2-D float array (or (H, W, C) uint8 picture) resampled to ``shape``."""
    from PIL import Image

    if values.shape[:2] == shape:
        return values
    method = Image.Resampling.BILINEAR if smooth else Image.Resampling.NEAREST
    if values.dtype == np.uint8:
        return np.asarray(Image.fromarray(values).resize((shape[1], shape[0]), method))
    image = Image.fromarray(np.asarray(values, np.float32), mode="F")
    return np.asarray(image.resize((shape[1], shape[0]), method))


def scaled(values: np.ndarray) -> np.ndarray:
    """Values scaled to [0, 1] (a constant array gives zeros); NaN counts as the minimum."""
    array = np.nan_to_num(np.asarray(values, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
    if high - low <= 0:
        return np.zeros(array.shape)
    return (array - low) / (high - low)


def heatmap(values: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A 2-D map as an RGB uint8 picture (``inferno``), resampled to ``shape`` (smoothly,
    unless the map is a coarse grid of regions whose cells should stay visible)."""
    fraction = scaled(values)
    if shape is not None:
        fraction = resize(fraction, shape, smooth=min(fraction.shape) >= 32)
    return colour_table()[np.clip(fraction * 255, 0, 255).astype(np.uint8)]


def grey(values: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A 2-D array (or (H, W, 3)) scaled to [0, 255] as an RGB uint8 picture."""
    fraction = scaled(values)
    picture = (fraction * 255).astype(np.uint8)
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=2)
    if shape is not None:
        picture = resize(picture, shape, smooth=False)
    return picture


def overlay(masks: list[np.ndarray], shape: tuple[int, int], dim: int = 190) -> np.ndarray:
    """An RGBA layer over a photo: outside every mask dimmed (alpha ``dim``), each mask's
    border in its explanation colour (the layer a report's opacity control fades)."""
    layer = np.zeros((*shape, 4), np.uint8)
    layer[..., 3] = dim
    for number, mask in enumerate(masks):
        inside = resize(np.asarray(mask, np.uint8), shape, smooth=False) > 0
        layer[inside, 3] = 0
        edge = inside & ~_eroded(inside)
        layer[edge, :3] = MULTI_COLOURS[number % len(MULTI_COLOURS)]
        layer[edge, 3] = 255
    return layer


def _eroded(mask: np.ndarray) -> np.ndarray:
    """The mask shrunk by one pixel (4-neighbourhood), for drawing its border."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return inner


def dimmed(photo: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The photo with everything outside the mask darkened (the thumbnail's picture)."""
    if mask is None:
        return photo
    inside = resize(np.asarray(mask, np.uint8), photo.shape[:2], smooth=False) > 0
    out = (photo.astype(np.float32) * 0.3).astype(np.uint8)
    out[inside] = photo[inside]
    return out


def png_uri(picture: np.ndarray) -> str:
    """A picture (H, W[, 3|4]) uint8 as a ``data:image/png`` URI."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", optimize=False, compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def jpeg_uri(picture: np.ndarray, quality: int = 80) -> str:
    """An RGB uint8 picture as a ``data:image/jpeg`` URI."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture).convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def file_uri(path: str | Path) -> str:
    """A PNG file's bytes as a ``data:image/png`` URI (a mode's own picture)."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
