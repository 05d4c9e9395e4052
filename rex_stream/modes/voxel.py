"""Voxel mode (3-D volumes): ``.npy`` or NIfTI → a tensor in the model's layout, 3-D boxes,
and an orthogonal slice montage through the responsibility peak.

The model's input shape decides the layout: ``(D, H, W)``, ``(C, D, H, W)`` (channels first
when the first extent is ≤ 4 and the last is not) or ``(D, H, W, C)``. Dynamic extents
(≤ 0) take the volume's own. The volume is never resampled: a shape the model does not take is
an :class:`InputError`. Mode options (``mode_options``): ``normalise`` = ``none`` (default),
``zscore`` or ``minmax``. NIfTI needs the ``nibabel`` extra (``pip install rex-stream[voxel]``).
"""

from __future__ import annotations

import logging
import mmap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.install_hint import install_command
from rex_stream.engine.subject import Subject
from rex_stream.errors import InputError
from rex_stream.modes._npy import load_npy
from rex_stream.modes.image import mask_baseline
from rex_stream.pictures.image import class_text, save_figure
from rex_stream.pictures.outline import draw_outline

if TYPE_CHECKING:
    from rex_stream.result import Explanation

logger = logging.getLogger(__name__)

SUFFIXES = {".nii", ".gz", ".npy"}
MODES = ("voxel",)

#: Channel counts a leading or trailing axis may hold to be taken for channels.
MAX_CHANNELS = 4


def volume_layout(shape: tuple[int, ...]) -> tuple[int | None, tuple[int, int, int]]:
    """Where the channel axis and the three spatial axes are in a model's input shape."""
    if len(shape) == 3:
        return None, (0, 1, 2)
    if len(shape) == 4:
        first, last = shape[0], shape[3]
        if 0 < first <= MAX_CHANNELS and not 0 < last <= MAX_CHANNELS:
            return 0, (1, 2, 3)
        if 0 < last <= MAX_CHANNELS:
            return 3, (0, 1, 2)
        if 0 < first <= MAX_CHANNELS:
            return 0, (1, 2, 3)
    raise InputError(
        f"the model's input shape {shape} cannot take a volume: expected (D, H, W), "
        f"(C, D, H, W) or (D, H, W, C) with C ≤ {MAX_CHANNELS}"
    )


def read_volume(path: Path) -> np.ndarray:
    """The array stored in a ``.npy`` or NIfTI (``.nii``, ``.nii.gz``) file."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        try:
            import nibabel
        except ModuleNotFoundError as exc:
            raise InputError(
                f"{path}: reading NIfTI needs nibabel ({install_command('voxel')})"
            ) from exc
        try:
            image = nibabel.load(str(path))
            return np.asarray(image.get_fdata(dtype=np.float32))  # type: ignore[attr-defined]
        except Exception as exc:  # nibabel raises many types for a damaged file
            raise InputError(f"{path}: cannot read NIfTI ({type(exc).__name__}: {exc})") from exc
    if name.endswith(".npy"):
        try:
            return load_npy(path, mmap=True)
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"{path}: cannot read .npy ({exc})") from exc
    raise InputError(f"{path}: voxel mode reads .npy, .nii or .nii.gz files")


def load(path: Path, info: ModelInfo, explain_config: ExplainConfig) -> Subject:
    """Read a volume file and prepare it as the model expects."""
    mode = explain_config.image.mode
    if mode is not None and mode not in MODES:
        raise InputError(f"{path} is a volume, but --mode is {mode}")
    subject = subject_from_array(read_volume(path), info, explain_config)
    subject.name = path.name.split(".")[0] or "volume"
    subject.source = str(path)
    return subject


def subject_from_array(
    array: np.ndarray, info: ModelInfo, explain_config: ExplainConfig
) -> Subject:
    """Wrap a volume: ``(D, H, W)`` or with a channel axis where the model has one."""
    array = np.asarray(array) if not isinstance(array, np.memmap) else array
    channel_axis, spatial = volume_layout(info.input_shape)
    if array.ndim == len(info.input_shape) + 1 and array.shape[0] == 1:
        array = array[0]  # a batch of one
    if channel_axis is not None and array.ndim == 3:
        array = np.expand_dims(array, channel_axis)  # a single-channel volume
    if channel_axis is None and array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != len(info.input_shape) or any(
        want > 0 and want != got for want, got in zip(info.input_shape, array.shape)
    ):
        raise InputError(
            f"the volume has shape {tuple(array.shape)} but the model takes "
            f"{tuple(info.input_shape)} (voxel mode does not resample)"
        )
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise InputError(f"the volume has dtype {array.dtype}; expected real numbers")
    tensor = np.ascontiguousarray(array, dtype=info.dtype)
    if not _all_finite(tensor):
        raise InputError("the volume contains NaN or infinite values")
    how = explain_config.image.mode_options.get("normalise", "none")
    if how != "none" and not tensor.flags.writeable:
        tensor = tensor.copy()  # a read-only memory map is normalised in a copy
    tensor = _normalise(tensor, how)
    mapping = _read_only_mapping(tensor)
    subject = (MappedSubject if mapping is not None else Subject)(
        name="volume",
        tensor=tensor,
        spatial_axes=spatial,
        baseline=mask_baseline(tensor, explain_config.image.mask_value),
        mode="voxel",
    )
    if isinstance(subject, MappedSubject):
        subject.mapping = mapping
        subject.after_fill()  # the checks above read every page
    return subject


@dataclass
class MappedSubject(Subject):
    """A volume read straight from its memory-mapped file (read-only): after every fill its
    pages go back to the page cache, so the volume is resident only while a mutant is being
    written (a 512³ float32 volume would otherwise hold 512 MiB next to the batch buffer,
    the map and the model's own copies)."""

    mapping: mmap.mmap | None = field(default=None, repr=False)

    def after_fill(self) -> None:
        """Drop this process's resident pages of the file (they stay in the page cache)."""
        if self.mapping is None:
            return
        try:
            self.mapping.madvise(mmap.MADV_DONTNEED)
        except (AttributeError, OSError, ValueError):  # no madvise here: keep the pages
            self.mapping = None


def _read_only_mapping(tensor: np.ndarray) -> mmap.mmap | None:
    """The read-only file mapping ``tensor`` is a view of, if it is one."""
    if tensor.flags.writeable:
        return None
    base = tensor.base
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base if isinstance(base, mmap.mmap) else None


def _all_finite(tensor: np.ndarray, block: int = 1 << 22) -> bool:
    """``isfinite`` over a large array without a full-size boolean temporary."""
    flat = tensor.reshape(-1)
    return all(np.isfinite(flat[i : i + block]).all() for i in range(0, flat.size, block))


def _normalise(tensor: np.ndarray, how: str) -> np.ndarray:
    """Scale intensities in place (``none``, ``zscore`` or ``minmax``)."""
    if how == "none":
        return tensor
    if how == "zscore":
        mean, std = float(tensor.mean(dtype=np.float64)), float(tensor.std(dtype=np.float64))
        tensor -= mean
        tensor /= std if std > 0 else 1.0
        return tensor
    if how == "minmax":
        low, high = float(tensor.min()), float(tensor.max())
        tensor -= low
        tensor /= (high - low) if high > low else 1.0
        return tensor
    raise InputError(f"voxel option normalise={how!r}: expected none, zscore or minmax")


def montage_slices(
    volume: np.ndarray, responsibility: np.ndarray, mask: np.ndarray | None
) -> tuple[tuple[int, int, int], list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]]:
    """The responsibility peak and the three orthogonal slices through it.

    Returns ``peak`` and ``[(title, volume slice, responsibility slice, mask slice), …]``.
    """
    peak = tuple(int(i) for i in np.unravel_index(int(np.argmax(responsibility)), volume.shape))
    slices = []
    for axis, name in enumerate(("axis 0", "axis 1", "axis 2")):
        index = [slice(None)] * 3
        index[axis] = peak[axis]  # type: ignore[call-overload]
        where = tuple(index)
        slices.append(
            (
                f"{name} = {peak[axis]}",
                np.asarray(volume[where], np.float32),
                np.asarray(responsibility[where], np.float32),
                None if mask is None else np.asarray(mask[where], bool),
            )
        )
    return peak, slices  # type: ignore[return-value]


def render(explanation: Explanation, path: Path) -> None:
    """Orthogonal slices through the responsibility peak: the volume in grey, the
    responsibility in colour, the explanation outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subject = explanation.subject
    volume = subject.tensor
    channels = [a for a in range(volume.ndim) if a not in subject.spatial_axes]
    if channels:
        volume = np.take(volume, 0, axis=channels[0])  # show the first channel
    peak, slices = montage_slices(volume, explanation.responsibility, explanation.mask)
    visual = explanation.config.visual
    figure, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    try:
        for axis, (title, picture, heat, mask) in zip(axes, slices):
            axis.imshow(picture.T, cmap="gray", origin="lower")
            axis.imshow(heat.T, cmap=visual.heatmap_colours, alpha=0.45, origin="lower")
            if mask is not None and mask.any() and not mask.all():
                draw_outline(axis, mask.T, "cyan")  # closed where it meets the edge
            axis.set_title(title)
            axis.axis("off")
        figure.suptitle(
            f"{class_text(explanation)} "
            f"(confidence {explanation.target.confidence:.2f}); peak at {peak}"
        )
        figure.tight_layout(rect=(0, 0, 1, 0.94))
        save_figure(figure, path, dpi=110)
    finally:
        plt.close(figure)
