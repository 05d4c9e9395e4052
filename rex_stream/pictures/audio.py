"""The picture of an audio explanation: the waveform with responsibility over time, and the
spectrogram, both with the explanation's intervals outlined."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rex_stream.pictures.image import save_figure


def save_waveform(
    waveform: np.ndarray,
    rate: int,
    offset_s: float,
    responsibility: np.ndarray,
    intervals: Sequence[tuple[int, int]],
    title: str,
    path: Path,
) -> None:
    """Draw one channel's ``waveform`` (samples at ``rate`` Hz, starting ``offset_s`` into the
    file) with ``responsibility`` shaded over it, its spectrogram below, and ``intervals``
    (``[start, stop)`` samples) outlined on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = offset_s + np.arange(waveform.size) / rate
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    try:
        top.plot(times, waveform, color="0.3", linewidth=0.6)
        top.set_ylabel("amplitude")
        shade = top.twinx()
        shade.fill_between(times, 0, responsibility, color="tab:orange", alpha=0.5, step="mid")
        shade.set_ylabel("responsibility")
        shade.set_ylim(0, max(float(responsibility.max()), 1e-12) * 1.05)
        bottom.specgram(
            waveform, NFFT=512, Fs=rate, noverlap=384, xextent=(times[0], times[-1]), cmap="magma"
        )
        bottom.set_ylabel("frequency (Hz)")
        bottom.set_xlabel("time (s)")
        for start, stop in intervals:
            for axis in (top, bottom):
                axis.axvspan(
                    offset_s + start / rate,
                    offset_s + stop / rate,
                    facecolor="none",
                    edgecolor="tab:cyan",
                    linewidth=2,
                )
        top.set_title(title)
        figure.tight_layout()
        save_figure(figure, path, dpi=110)
    finally:
        plt.close(figure)
