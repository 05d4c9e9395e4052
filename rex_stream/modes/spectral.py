"""Spectral mode: a 1-D signal (a spectrum) explained by contiguous intervals.

Masked intervals take a constant (``mask_value``: a number, ``min`` or ``mean``), or, with the
mode option ``interpolate=true``, the straight line joining the visible samples on either side
(ReX's spectral occlusion; ends are held flat). ReX adds N(0, 0.02) noise there by default;
rex-stream adds none unless asked (``noise=0.02``; seeded by the mask, so deterministic).

Mode options: ``row=N`` (which signal of a 2-D file), ``key=NAME`` (the variable of a .mat
file), ``interpolate=true``, ``noise=SIGMA``, ``resample=true`` (linear resampling to the
model's length instead of an error).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.geometry import Box
from rex_stream.engine.install_hint import install_command
from rex_stream.engine.mask_values import constant_mask_value
from rex_stream.engine.subject import Subject
from rex_stream.errors import InputError
from rex_stream.modes._npy import load_npy
from rex_stream.modes._signal1d import check_finite, option_bool, option_float, option_int, runs
from rex_stream.pictures.image import class_text, save_figure

if TYPE_CHECKING:
    from rex_stream.result import Explanation

SUFFIXES = {".npy", ".mat"}
MODES = ("spectral",)


@dataclass
class SpectralSubject(Subject):
    """A signal whose masked intervals are constant, or interpolated across when asked."""

    interpolate: bool = False
    noise: float = 0.0

    def fill_boxes(self, out: np.ndarray, boxes: Sequence[Box]) -> None:
        """Write the mutant that shows only ``boxes``."""
        if not self.interpolate and self.noise == 0.0:
            super().fill_boxes(out, boxes)
            return
        visible = np.zeros(self.spatial_shape[0], bool)
        for box in boxes:
            visible[box.start[0] : box.stop[0]] = True
        self._fill(out, visible)

    def fill_mask(self, out: np.ndarray, visible: np.ndarray) -> None:
        """Write the signal with only the samples where ``visible`` is true shown."""
        if not self.interpolate and self.noise == 0.0:
            super().fill_mask(out, visible)
            return
        self._fill(out, np.asarray(visible, bool).reshape(-1))

    def _fill(self, out: np.ndarray, visible: np.ndarray) -> None:
        axis = self.spatial_axes[0]
        signal = np.moveaxis(self.tensor, axis, -1)
        length = signal.shape[-1]
        rows = signal.reshape(-1, length).astype(np.float64)
        shown = np.flatnonzero(visible)
        if self.interpolate and shown.size:
            positions = np.arange(length)
            filled = np.stack([np.interp(positions, shown, row[shown]) for row in rows])
        else:
            base = np.moveaxis(self._baseline_full, axis, -1).reshape(-1, length)
            filled = np.where(visible, rows, base)
        if self.noise > 0:
            digest = hashlib.blake2b(np.packbits(visible).tobytes(), digest_size=8).digest()
            rng = np.random.default_rng(int.from_bytes(digest, "little"))
            filled = filled + np.where(visible, 0.0, rng.normal(0.0, self.noise, filled.shape))
        result = np.moveaxis(filled.reshape(signal.shape), -1, axis)
        np.copyto(out, result.astype(out.dtype, copy=False))


def read_signal(path: Path, explain_config: ExplainConfig) -> np.ndarray:
    """Read a 1-D signal from .npy, .mat or .csv/.txt (``row=N`` picks one of several)."""
    options = explain_config.image.mode_options
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = load_npy(path)
        elif suffix == ".mat":
            array = _read_mat(path, options.get("key"))
        else:
            array = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=2)
    except InputError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: cannot read signal ({exc})") from exc
    return _one_signal(np.asarray(array), option_int(options, "row", 0), str(path))


def _read_mat(path: Path, key: str | None) -> np.ndarray:
    try:
        from scipy.io import loadmat
    except ImportError as exc:
        hint = install_command("spectral")
        raise InputError(f"{path}: reading .mat needs scipy ({hint})") from exc
    try:
        contents = loadmat(path)
    except Exception as exc:  # scipy raises MatReadError, ValueError, TypeError…
        raise InputError(f"{path}: cannot read .mat file ({exc})") from exc
    arrays = {
        k: v
        for k, v in contents.items()
        if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "fiu"
    }
    if key is not None:
        if key not in arrays:
            raise InputError(f"{path}: no numeric variable {key!r}; found {sorted(arrays)}")
        return arrays[key]
    if len(arrays) != 1:
        raise InputError(
            f"{path}: {len(arrays)} numeric variables ({sorted(arrays)}); pick one with key=NAME"
        )
    return next(iter(arrays.values()))


def _one_signal(array: np.ndarray, row: int, what: str) -> np.ndarray:
    """Squeeze to 1-D; a 2-D array of several signals gives its row ``row``."""
    if array.dtype.kind not in "fiub":
        raise InputError(f"{what}: a signal must be numeric, got {array.dtype}")
    squeezed = np.squeeze(array)
    if squeezed.ndim == 2:
        if not -squeezed.shape[0] <= row < squeezed.shape[0]:
            raise InputError(f"{what}: row {row} does not exist ({squeezed.shape[0]} signals)")
        squeezed = squeezed[row]
    if squeezed.ndim != 1:
        raise InputError(f"{what}: a spectrum must be 1-D (or rows of them), got {array.shape}")
    if squeezed.size < 4:
        raise InputError(f"{what}: a signal needs at least 4 samples, got {squeezed.size}")
    return squeezed.astype(np.float64)


def _layout(info: ModelInfo) -> tuple[int, int, int]:
    """(length axis, channels, length) of a model taking (L,), (1, L) or (L, 1)."""
    shape = info.input_shape
    if len(shape) == 1:
        return 0, 1, shape[0]
    if len(shape) == 2 and shape[0] == 1:
        return 1, 1, shape[1]
    if len(shape) == 2 and shape[1] == 1:
        return 0, 1, shape[0]
    raise InputError(
        f"the model's input shape {shape} does not take a 1-D signal: expected (L,), (1, L) "
        "or (L, 1)"
    )


def load(path: Path, info: ModelInfo, explain_config: ExplainConfig) -> Subject:
    """Read a spectrum file as a Subject shaped for the model."""
    signal = read_signal(path, explain_config)
    subject = _subject(signal, info, explain_config, path.stem, str(path))
    return subject


def subject_from_array(
    array: np.ndarray, info: ModelInfo, explain_config: ExplainConfig
) -> Subject:
    """Wrap a 1-D signal (or a (1, L) / (L, 1) array) already in model units."""
    row = option_int(explain_config.image.mode_options, "row", 0)
    signal = _one_signal(np.asarray(array), row, "the input array")
    return _subject(signal, info, explain_config, "array", None)


def _subject(
    signal: np.ndarray,
    info: ModelInfo,
    explain_config: ExplainConfig,
    name: str,
    source: str | None,
) -> SpectralSubject:
    what = source or "the input array"
    check_finite(signal, what)
    options = explain_config.image.mode_options
    axis, _, length = _layout(info)
    if length > 0 and signal.size != length:
        if not option_bool(options, "resample", False):
            raise InputError(
                f"{what} has {signal.size} samples but the model takes {length} "
                "(mode option resample=true resamples it)"
            )
        signal = np.interp(np.linspace(0, signal.size - 1, length), np.arange(signal.size), signal)
    shape = tuple(info.input_shape)
    if length <= 0:
        shape = tuple(signal.size if s <= 0 else s for s in shape)
    tensor = np.ascontiguousarray(signal.reshape(shape), dtype=info.dtype)
    baseline = constant_mask_value(signal, explain_config.image.mask_value)
    noise = option_float(options, "noise", 0.0)
    if noise < 0:
        raise InputError(f"mode option noise={noise} must be >= 0")
    return SpectralSubject(
        name=name,
        tensor=tensor,
        spatial_axes=(axis,),
        baseline=baseline,
        mode="spectral",
        display=signal.astype(np.float32),
        source=source,
        interpolate=option_bool(options, "interpolate", False),
        noise=noise,
    )


def explanation_intervals(explanation: Explanation) -> list[tuple[int, int]]:
    """The ``[start, stop)`` sample intervals of the sufficient explanation."""
    mask = explanation.mask
    return [] if mask is None else runs(np.asarray(mask).reshape(-1))


def render(explanation: Explanation, path: Path) -> None:
    """The signal, its responsibility shaded underneath, explanation intervals highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    subject = explanation.subject
    signal = (
        subject.display if subject.display is not None else subject.tensor.reshape(-1)
    ).astype(np.float64)
    responsibility = np.asarray(explanation.responsibility, np.float64).reshape(-1)
    x = np.arange(signal.size)
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(9, 4.2), dpi=120, sharex=True, height_ratios=(3, 1)
    )
    low, high = float(signal.min()), float(signal.max())
    span = high - low or 1.0
    floor = low - 0.05 * span
    peak = float(responsibility.max()) or 1.0
    # shade the area under the signal with the responsibility as colour intensity
    colours = plt.get_cmap(explanation.config.visual.heatmap_colours)
    top.fill_between(x, floor, signal, color="#eeeeee", linewidth=0)
    shade = np.clip(responsibility / peak, 0.0, 1.0)
    rgba = colours(0.25 + 0.6 * shade)
    rgba[:, 3] = np.where(shade > 0.02, 0.25 + 0.75 * shade, 0.0)
    top.bar(x, signal - floor, bottom=floor, width=1.0, color=rgba, linewidth=0)
    for start, stop in explanation_intervals(explanation):
        top.axvspan(start - 0.5, stop - 0.5, color="#2ca02c", alpha=0.18, linewidth=0)
    top.plot(x, signal, color="black", linewidth=0.8)
    top.set_ylim(floor, high + 0.05 * span)
    target = explanation.target
    top.set_title(
        f"{subject.name}: {class_text(explanation)} ({target.confidence:.2f}); "
        "green = sufficient explanation",
        fontsize=9,
    )
    bottom.fill_between(x, 0, responsibility, color=colours(0.6), linewidth=0)
    bottom.set_ylabel("resp.", fontsize=8)
    bottom.set_xlabel("sample")
    figure.tight_layout()
    try:
        save_figure(figure, path)
    finally:
        plt.close(figure)
