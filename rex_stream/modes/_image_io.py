"""Reading image files faithfully: by their real range, upright, and never a decompression bomb.

Pillow's ``convert`` clips 16-bit and float pixels to 8 bits (a 16-bit PNG turns almost white, a
float TIFF in [0, 1] black) and ignores EXIF orientation; this module reads the pixel values
as stored, brings them to the 8-bit scale that ``norm`` (default 255) expects, and turns the
image upright before anything else sees it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rex_stream.errors import InputError

logger = logging.getLogger(__name__)

#: Pillow modes whose pixels do not fit 8 bits, read as arrays instead of converted.
HIGH_DEPTH_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}

#: Full scale of the unsigned 16-bit modes.
SIXTEEN_BIT = 65535.0


def open_upright(path: Path) -> Image.Image:
    """Decode an image file, refusing decompression bombs, and apply its EXIF orientation."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                _refuse_bomb(opened.size, path)  # also when another thread reset the filter
                opened.load()
                return _upright(opened, path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(
            f"{path}: refused as a possible decompression bomb ({exc}); "
            "shrink the image before explaining it"
        ) from exc
    except UnidentifiedImageError as exc:
        raise InputError(f"{path} is not an image Pillow can read") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{path}: cannot read image ({exc})") from exc


def _refuse_bomb(size: tuple[int, int], path: Path) -> None:
    """Refuse images over Pillow's decompression-bomb warning limit, not only its error limit:
    an input that large cannot be meant for a classifier, and decoding it could exhaust
    memory."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and size[0] * size[1] > limit:
        raise InputError(
            f"{path}: refused as a possible decompression bomb ({size[0]} × {size[1]} pixels, "
            f"over {limit}); shrink the image before explaining it"
        )


def _upright(image: Image.Image, path: Path) -> Image.Image:
    """The image turned as its EXIF orientation says (a copy either way)."""
    try:
        turned = ImageOps.exif_transpose(image)
    except Exception as exc:  # a damaged EXIF block must not lose the picture
        logger.warning("%s: ignoring unreadable EXIF orientation (%s)", path, exc)
        return image.copy()
    return turned if turned is not None else image.copy()


def eight_bit_pixels(
    image: Image.Image, wanted: str, size: tuple[int, int], path: Path
) -> np.ndarray:
    """The image in mode ``wanted`` ("RGB" or "L") resized to ``size`` (width, height), as
    float32 (H, W, C) on the 0–255 scale, whatever the file's bit depth."""
    if image.mode not in HIGH_DEPTH_MODES:
        pixels = np.asarray(image.convert(wanted).resize(size), np.float32)
        return pixels.reshape(size[1], size[0], -1)
    scaled = _to_eight_bit_scale(np.asarray(image), image.mode, path)
    if scaled.shape[::-1] != size:
        resized = Image.fromarray(scaled).resize(size, Image.Resampling.BICUBIC)
        scaled = np.clip(np.asarray(resized, np.float32), 0.0, 255.0)
    grey = scaled[:, :, None]
    return np.repeat(grey, 3, axis=2) if wanted == "RGB" else grey


def _to_eight_bit_scale(values: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """High-depth pixels as float32 on the 0–255 scale, by the range they are stored in.

    16-bit modes: 0–65535. Floats: [0, 1] when they lie in it. Other values in [0, 255] are
    read as 8-bit (a warning: ambiguous); 32-bit integers up to 65535 as 16-bit; anything
    else is stretched from its minimum to its maximum (a warning).
    """
    values = values.astype(np.float64)
    if mode.startswith("I;16"):
        return (values * (255.0 / SIXTEEN_BIT)).astype(np.float32)
    if not np.isfinite(values).all():
        raise InputError(f"{path}: the image contains NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0 and mode == "F":
        return (values * 255.0).astype(np.float32)
    if low >= 0.0 and high <= 255.0:
        logger.warning(
            "%s: %s pixels in [%g, %g] are ambiguous; read as 8-bit values (0–255)",
            path,
            "float" if mode == "F" else "32-bit integer",
            low,
            high,
        )
        return values.astype(np.float32)
    if low >= 0.0 and high <= SIXTEEN_BIT and mode == "I":
        return (values * (255.0 / SIXTEEN_BIT)).astype(np.float32)
    logger.warning(
        "%s: pixels in [%g, %g] fit no standard range; stretched from their minimum to their "
        "maximum",
        path,
        low,
        high,
    )
    return ((values - low) * (255.0 / ((high - low) or 1.0))).astype(np.float32)
