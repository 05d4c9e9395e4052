"""Image mode (RGB and greyscale): Pillow file → resized, normalised tensor in model layout."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rex_stream.config import ExplainConfig, ImageConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.mask_values import constant_mask_value
from rex_stream.engine.subject import Subject
from rex_stream.errors import InputError
from rex_stream.modes._image_io import eight_bit_pixels, open_upright
from rex_stream.modes._npy import load_npy

if TYPE_CHECKING:
    from rex_stream.result import Explanation

SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".npy"}
MODES = ("RGB", "L")


def image_layout(shape: tuple[int, ...]) -> tuple[int | None, tuple[int, int]]:
    """Where the channel axis and the (height, width) axes are in a model's input shape."""
    if len(shape) == 2:
        return None, (0, 1)
    if len(shape) == 3:
        if shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):
            return 0, (1, 2)
        if shape[2] in (1, 3, 4):
            return 2, (0, 1)
        if shape[0] in (1, 3, 4):
            return 0, (1, 2)
    raise InputError(
        f"the model's input shape {shape} cannot take an image: expected (C, H, W), (H, W, C) "
        "with C in 1, 3, 4, or (H, W)"
    )


def load(path: Path, info: ModelInfo, explain_config: ExplainConfig) -> Subject:
    """Read an image file (or a ``.npy`` tensor in the model's layout) as the model expects.

    Pixels are read by their real range (16-bit, float), turned upright by EXIF orientation,
    and decompression bombs are refused (see :mod:`rex_stream.modes._image_io`).
    """
    config = explain_config.image
    _refuse_mode_options(config)
    channel_axis, (h_axis, w_axis) = image_layout(info.input_shape)
    channels = 1 if channel_axis is None else info.input_shape[channel_axis]
    if path.suffix.lower() == ".npy":
        subject = subject_from_array(read_array(path), info, explain_config)
        subject.name, subject.source = path.stem, str(path)
        return subject
    image = open_upright(path)
    wanted = "L" if channels == 1 else "RGB"
    if config.mode is not None and config.mode != wanted:
        raise InputError(
            f"--mode {config.mode} does not fit the model, which takes {channels}-channel "
            f"images (mode {wanted})"
        )
    height = info.input_shape[h_axis] if info.input_shape[h_axis] > 0 else image.height
    width = info.input_shape[w_axis] if info.input_shape[w_axis] > 0 else image.width
    pixels = eight_bit_pixels(image, wanted, (width, height), path)
    display = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
    display = display[:, :, 0] if wanted == "L" else display
    tensor = _normalise(pixels, config)
    if channels == 4:
        tensor = np.concatenate([tensor, np.zeros_like(tensor[:, :, :1])], axis=2)
    if channel_axis is None:
        tensor = tensor[:, :, 0]
    elif channel_axis == 0:
        tensor = np.transpose(tensor, (2, 0, 1))
    tensor = np.ascontiguousarray(tensor, dtype=info.dtype)
    spatial = (h_axis, w_axis)
    return Subject(
        name=path.stem,
        tensor=tensor,
        spatial_axes=spatial,
        baseline=mask_baseline(tensor, config.mask_value),
        mode=wanted,
        display=display,
        source=str(path),
    )


def _refuse_mode_options(config: ImageConfig) -> None:
    """Images take no mode options: say so instead of ignoring them."""
    if config.mode_options:
        names = ", ".join(sorted(config.mode_options))
        raise InputError(
            f"--mode-option {names}: the image mode takes no mode options "
            "(normalisation is --means/--stds/--norm)"
        )


def subject_from_array(
    array: np.ndarray, info: ModelInfo, explain_config: ExplainConfig
) -> Subject:
    """Wrap an array that is already in the model's input space (no batch axis)."""
    config = explain_config.image
    array = np.asarray(array)
    if array.shape == (1, *info.input_shape):
        array = array[0]
    if array.shape != info.input_shape:
        raise InputError(
            f"the array has shape {array.shape} but the model takes {info.input_shape}"
        )
    if not np.isfinite(array).all():
        raise InputError("the input array contains NaN or infinite values")
    channel_axis, spatial = image_layout(info.input_shape)
    tensor = np.ascontiguousarray(array, dtype=info.dtype)
    mode = "L" if channel_axis is None or info.input_shape[channel_axis] == 1 else "RGB"
    return Subject(
        name="array",
        tensor=tensor,
        spatial_axes=spatial,
        baseline=mask_baseline(tensor, config.mask_value),
        mode=mode,
    )


def read_array(path: Path) -> np.ndarray:
    """The array in a ``.npy`` file (no pickles)."""
    try:
        return load_npy(path)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: cannot read .npy ({exc})") from exc


def _normalise(pixels: np.ndarray, config: ImageConfig) -> np.ndarray:
    """Scale by ``norm``, then subtract ``means`` and divide by ``stds`` per channel."""
    out = pixels / config.norm if config.norm else pixels.copy()
    for name, values in (("means", config.means), ("stds", config.stds)):
        if values is not None and len(values) not in (1, out.shape[2]):
            raise InputError(
                f"rex.onnx.{name} has {len(values)} values for a {out.shape[2]}-channel image"
            )
    if config.means is not None:
        out = out - np.asarray(config.means, np.float32)
    if config.stds is not None:
        out = out / np.asarray(config.stds, np.float32)
    return out.astype(np.float32)


def mask_baseline(tensor: np.ndarray, mask_value: float | str) -> float:
    """The value masked elements take: a number, or the input's ``min`` or ``mean`` (the
    mean, too, outside the search of a ``random``/``linear`` per-iteration sweep)."""
    return constant_mask_value(tensor, mask_value)


def render_heatmap(explanation: Explanation, path: Path) -> None:
    """The responsibility map as filled contours over the image."""
    from rex_stream.pictures.image import save_heatmap

    save_heatmap(explanation, path)


def render(explanation: Explanation, path: Path) -> None:
    """The ReX-style overlay: the explanation in colour over a greyed image."""
    from rex_stream.pictures.image import save_overlay

    save_overlay(explanation, path)


IMAGENET_MEANS = (0.485, 0.456, 0.406)
IMAGENET_STDS = (0.229, 0.224, 0.225)


def imagenet_variant(subject: Subject, config: ImageConfig) -> np.ndarray | None:
    """The subject normalised with ImageNet's statistics, when the user gave none.

    Used once per run to warn that a model may expect normalised input: None unless the
    subject is a 3-channel image scaled to [0, 1] with no ``means``/``stds`` set.
    """
    if subject.mode != "RGB" or config.means is not None or config.stds is not None:
        return None
    if config.norm != 255.0 or subject.tensor.ndim != 3:
        return None
    channel_axis = next(a for a in range(3) if a not in subject.spatial_axes)
    if subject.tensor.shape[channel_axis] != 3:
        return None
    shape = [1, 1, 1]
    shape[channel_axis] = 3
    means = np.asarray(IMAGENET_MEANS, np.float32).reshape(shape)
    stds = np.asarray(IMAGENET_STDS, np.float32).reshape(shape)
    return ((subject.tensor - means) / stds).astype(subject.tensor.dtype)
