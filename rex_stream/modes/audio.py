"""Audio mode: ``.wav`` / ``.flac`` / ``.ogg`` (soundfile) → the model's waveform tensor, time
as the one spatial axis, and a waveform + spectrogram picture of the explanation.

The model's input shape decides the layout: ``(T,)`` mono, ``(C, T)`` or ``(T, C)``
(the axis of extent ≤ 8 is the channel axis). A dynamic ``T`` (≤ 0) takes the whole file.
Files are mixed down to mono for a mono model and resampled to the model's rate with
:func:`scipy.signal.resample_poly`.

Mode options (``mode_options``, all strings):

- ``sample_rate`` — the model's rate in Hz (default 16000);
- ``baseline`` — ``silence`` (default: the mask value, 0 unless ``mask_value`` says
  otherwise) or ``noise`` (masked samples become the quietest 10 % of the recording's RMS
  level: a constant-level reference noise, drawn with a fixed seed);
- ``offset_s`` — where the explained window starts, for files longer than the model's input.
  Without it the loudest window (highest RMS, hop ``hop_s``, default half a window) is
  explained. :func:`rex_stream.runs.windows.explain_windows` instead asks the model and
  explains the window with the highest target confidence, or every window.

Needs the ``audio`` extra (``soundfile``, ``scipy``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.install_hint import install_command
from rex_stream.engine.mask_values import constant_mask_value
from rex_stream.engine.subject import Subject
from rex_stream.errors import ConfigError, InputError

if TYPE_CHECKING:
    from rex_stream.result import Explanation

logger = logging.getLogger(__name__)

SUFFIXES = {".wav", ".flac", ".ogg"}
MODES = ("audio",)

DEFAULT_RATE = 16000
MIN_RATE, MAX_RATE = 1000, 384000
MAX_CHANNELS = 8


@dataclass
class AudioSubject(Subject):
    """A window of a recording: ``offset`` (samples at ``sample_rate``) locates it in the file."""

    sample_rate: int = DEFAULT_RATE
    offset: int = 0

    @property
    def offset_s(self) -> float:
        """Start of the window in the file, in seconds."""
        return self.offset / self.sample_rate


def audio_layout(shape: tuple[int, ...]) -> tuple[int | None, int]:
    """The channel axis (or None) and the time axis of a model's input shape."""
    if len(shape) == 1:
        return None, 0
    if len(shape) == 2:
        if 0 < shape[0] <= MAX_CHANNELS and not 0 < shape[1] <= MAX_CHANNELS:
            return 0, 1
        if 0 < shape[1] <= MAX_CHANNELS:
            return 1, 0
    raise InputError(
        f"the model's input shape {shape} cannot take audio: expected (T,), (C, T) or (T, C)"
    )


def _option(config: ExplainConfig, name: str, default: str) -> str:
    return str(config.image.mode_options.get(name, default))


def _float_option(config: ExplainConfig, name: str, default: float | None) -> float | None:
    raw = config.image.mode_options.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"audio option {name}={raw!r} is not a number") from exc


def model_rate(config: ExplainConfig) -> int:
    """The model's sample rate from ``mode_options['sample_rate']``."""
    rate = _float_option(config, "sample_rate", DEFAULT_RATE)
    assert rate is not None
    if rate != int(rate) or not MIN_RATE <= rate <= MAX_RATE:
        raise ConfigError(f"audio option sample_rate={rate:g} must be an integer in 1000..384000")
    return int(rate)


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Samples ``(T, C)`` float32 and the file's rate."""
    try:
        import soundfile
    except ModuleNotFoundError as exc:
        raise InputError(
            f"{path}: reading audio needs soundfile ({install_command('audio')})"
        ) from exc
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, soundfile.LibsndfileError) as exc:
        raise InputError(f"{path}: cannot read audio ({exc})") from exc
    return samples, int(rate)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``samples`` (T, C) from ``rate`` to ``target`` Hz (polyphase, per channel)."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InputError(
            f"unsupported sample rate {rate} Hz: rex-stream reads {MIN_RATE}..{MAX_RATE} Hz"
        )
    if rate == target:
        return samples
    from scipy.signal import resample_poly

    common = gcd(rate, target)
    return resample_poly(samples, target // common, rate // common, axis=0).astype(np.float32)


def load(path: Path, info: ModelInfo, explain_config: ExplainConfig) -> AudioSubject:
    """Read an audio file and prepare the explained window as the model expects."""
    mode = explain_config.image.mode
    if mode is not None and mode not in MODES:
        raise InputError(f"{path} is audio, but --mode is {mode}")
    samples, rate = read_audio(path)
    target = model_rate(explain_config)
    subject = subject_from_samples(resample(samples, rate, target), info, explain_config, target)
    subject.name = path.stem
    subject.source = str(path)
    return subject


def subject_from_array(
    array: np.ndarray, info: ModelInfo, explain_config: ExplainConfig
) -> AudioSubject:
    """Wrap a waveform already at the model's rate: ``(T,)``, or ``(T, C)`` / ``(C, T)``."""
    array = np.asarray(array, dtype=np.float32)
    channel_axis, _ = audio_layout(info.input_shape)
    if array.ndim == 1:
        array = array[:, None]
    elif array.ndim == 2 and channel_axis == 0 and array.shape[0] <= MAX_CHANNELS:
        array = array.T
    elif array.ndim != 2:
        raise InputError(f"the waveform has shape {array.shape}; expected (T,), (T, C) or (C, T)")
    return subject_from_samples(array, info, explain_config, model_rate(explain_config))


def subject_from_samples(
    samples: np.ndarray, info: ModelInfo, config: ExplainConfig, rate: int
) -> AudioSubject:
    """A subject of ``samples`` (T, C) at ``rate`` Hz: the channels and the window the model
    takes."""
    if samples.shape[0] == 0:
        raise InputError("the recording is empty")
    if not np.isfinite(samples).all():
        raise InputError("the waveform contains NaN or infinite values")
    channel_axis, time_axis = audio_layout(info.input_shape)
    channels = 1 if channel_axis is None else info.input_shape[channel_axis]
    if samples.shape[1] != channels:
        if channels == 1:
            samples = samples.mean(axis=1, keepdims=True)
        else:
            raise InputError(
                f"the recording has {samples.shape[1]} channels but the model takes {channels}"
            )
    length = info.input_shape[time_axis]
    offset = 0
    if length > 0:
        if samples.shape[0] < length:
            pad = np.zeros((length - samples.shape[0], channels), np.float32)
            samples = np.concatenate([samples, pad])
        elif samples.shape[0] > length:
            offset = _choose_window(samples, length, rate, config)
            samples = samples[offset : offset + length]
    window = samples if channel_axis != 0 else samples.T
    tensor = np.ascontiguousarray(window[:, 0] if channel_axis is None else window, info.dtype)
    return AudioSubject(
        name="waveform",
        tensor=tensor,
        spatial_axes=(time_axis,),
        baseline=_baseline(tensor, config, time_axis),
        mode="audio",
        sample_rate=rate,
        offset=offset,
    )


def window_starts(total: int, length: int, hop: int) -> list[int]:
    """Window starts covering ``total`` samples (the last window ends at the end)."""
    starts = list(range(0, max(total - length, 0) + 1, max(hop, 1)))
    if starts[-1] + length < total:
        starts.append(total - length)
    return starts


def window_hop(length: int, rate: int, config: ExplainConfig) -> int:
    """Samples between window starts: ``hop_s``, else half a window."""
    hop_s = _float_option(config, "hop_s", None)
    return max(1, round(hop_s * rate)) if hop_s else max(1, length // 2)


def _choose_window(samples: np.ndarray, length: int, rate: int, config: ExplainConfig) -> int:
    """``offset_s`` if given, else the loudest window."""
    total = samples.shape[0]
    offset_s = _float_option(config, "offset_s", None)
    if offset_s is not None:
        offset = round(offset_s * rate)
        if not 0 <= offset <= total - length:
            raise InputError(
                f"audio option offset_s={offset_s:g} is outside the recording "
                f"(0..{(total - length) / rate:g} s for a {length / rate:g} s window)"
            )
        return offset
    energy = np.concatenate([[0.0], np.cumsum((samples.astype(np.float64) ** 2).sum(axis=1))])
    starts = window_starts(total, length, window_hop(length, rate, config))
    loudness = [energy[s + length] - energy[s] for s in starts]
    best = starts[int(np.argmax(loudness))]
    logger.info("explaining the loudest %.2f s window, at %.2f s", length / rate, best / rate)
    return best


def _baseline(tensor: np.ndarray, config: ExplainConfig, time_axis: int) -> np.ndarray | float:
    """Silence (the mask value) or a quiet reference noise at the recording's low RMS level."""
    kind = _option(config, "baseline", "silence")
    if kind == "silence":
        return constant_mask_value(tensor, config.image.mask_value)
    if kind == "noise":
        frames = np.moveaxis(tensor, time_axis, 0)
        usable = frames.shape[0] // 160 * 160 or frames.shape[0]
        rms = np.sqrt(
            (frames[:usable].reshape(-1, min(160, usable), *frames.shape[1:]) ** 2).mean(axis=1)
        )
        level = float(np.quantile(rms, 0.1))
        noise = np.random.default_rng(0).normal(0.0, level, tensor.shape)
        return noise.astype(tensor.dtype)
    raise ConfigError(f"audio option baseline={kind!r}: expected silence or noise")


#: explanation intervals closer than this are shown as one (a gap of a few samples is noise)
MERGE_GAP_S = 0.005


def explanation_intervals(mask: np.ndarray, min_gap: int = 0) -> list[tuple[int, int]]:
    """``[start, stop)`` sample intervals where a 1-D mask is true; intervals separated by
    fewer than ``min_gap`` samples are merged (for display)."""
    padded = np.concatenate([[False], np.asarray(mask, bool).ravel(), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    merged: list[tuple[int, int]] = []
    for a, b in zip(edges[::2], edges[1::2]):
        if merged and a - merged[-1][1] < min_gap:
            merged[-1] = (merged[-1][0], int(b))
        else:
            merged.append((int(a), int(b)))
    return merged


def _shown_intervals(explanation: Explanation) -> list[tuple[int, int]]:
    if explanation.mask is None:
        return []
    rate = getattr(explanation.subject, "sample_rate", DEFAULT_RATE)
    return explanation_intervals(explanation.mask, max(1, round(rate * MERGE_GAP_S)))


def summary_lines(explanation: Explanation) -> list[str]:
    """The explanation's time intervals, for the human summary."""
    rate = getattr(explanation.subject, "sample_rate", DEFAULT_RATE)
    offset_s = getattr(explanation.subject, "offset_s", 0.0)
    intervals = _shown_intervals(explanation)
    if not intervals:
        return []
    shown = ", ".join(
        f"{offset_s + a / rate:.3f}–{offset_s + b / rate:.3f} s" for a, b in intervals[:8]
    )
    more = f" (+{len(intervals) - 8} more)" if len(intervals) > 8 else ""
    return [f"explanation intervals: {shown}{more}"]


def render(explanation: Explanation, path: Path) -> None:
    """Waveform with responsibility over time and the explanation intervals, and the
    spectrogram with the same intervals."""
    from rex_stream.pictures.audio import save_waveform
    from rex_stream.pictures.image import class_text

    subject = explanation.subject
    rate = getattr(subject, "sample_rate", DEFAULT_RATE)
    offset_s = getattr(subject, "offset_s", 0.0)
    waveform = np.moveaxis(subject.tensor, subject.spatial_axes[0], 0).reshape(
        subject.spatial_shape[0], -1
    )[:, 0]
    intervals = _shown_intervals(explanation)
    title = (
        f"{class_text(explanation)} "
        f"(confidence {explanation.target.confidence:.2f}); explanation: "
        + ", ".join(
            f"{offset_s + a / rate:.2f}–{offset_s + b / rate:.2f} s" for a, b in intervals[:4]
        )
    )
    responsibility = np.asarray(explanation.responsibility, np.float32).ravel()
    save_waveform(waveform, rate, offset_s, responsibility, intervals, title, path)
