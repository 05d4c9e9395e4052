"""Audio mode against the bundled keyword model (real onnxruntime, real files): the interval
of a spoken word at a known time is marked, windows and resampling work, bad inputs give
one-line InputErrors."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import pytest
import soundfile

from rex_stream import ExplainConfig, explain_sync
from rex_stream.errors import InputError
from rex_stream.modes.audio import explanation_intervals
from rex_stream.runs.windows import explain_windows

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"
MODEL = MODELS / "audio-keywords16k.onnx"
EXAMPLE = MODELS / "audio-example-left.flac"
WORD = json.loads((MODELS / "audio-example-left.json").read_text())
LEFT = 2  # class index of "left" (yes, no, left, right, background)
RATE = 16000


@pytest.fixture(scope="module")
def best_window():  # type: ignore[no-untyped-def]
    config = ExplainConfig().with_overrides(iters=8, seed=2, mode="audio")
    return anyio.run(lambda: explain_windows(EXAMPLE, str(MODEL), config))[0]


def test_planted_word_interval_is_marked(best_window) -> None:  # type: ignore[no-untyped-def]
    explanation = best_window
    assert explanation.target.classification == LEFT
    offset = explanation.subject.offset_s
    assert offset <= WORD["start_s"] and WORD["stop_s"] <= offset + 1.0
    peak_s = offset + int(np.argmax(explanation.responsibility)) / RATE
    assert WORD["start_s"] - 0.05 <= peak_s <= WORD["stop_s"] + 0.05
    mask = explanation.mask
    assert mask is not None and 0 < mask.mean() < 0.6
    times = offset + np.flatnonzero(mask) / RATE
    inside = (times >= WORD["start_s"] - 0.05) & (times <= WORD["stop_s"] + 0.05)
    assert inside.mean() > 0.8
    assert explanation_intervals(mask)


def test_loudest_window_resampled_stereo_and_picture(tmp_path: Path, best_window) -> None:  # type: ignore[no-untyped-def]
    from rex_stream.modes import render_explanation

    samples, _ = soundfile.read(str(EXAMPLE), dtype="float32")
    stereo = tmp_path / "left-22k.wav"
    from scipy.signal import resample_poly

    resampled = resample_poly(samples, 441, 320).astype(np.float32)
    soundfile.write(str(stereo), np.stack([resampled, resampled], axis=1), 22050)
    explanation = explain_sync(stereo, str(MODEL), iters=2, seed=2, extract=False)
    assert explanation.subject.mode == "audio"
    assert explanation.target.classification == LEFT
    offset = explanation.subject.offset_s
    assert offset <= WORD["start_s"] and WORD["stop_s"] <= offset + 1.0
    picture = tmp_path / "left.png"
    render_explanation(best_window, picture)
    assert picture.stat().st_size > 5000


def test_silence_baseline_vs_noise_baseline() -> None:
    noise = explain_sync(
        EXAMPLE,
        str(MODEL),
        iters=1,
        seed=2,
        extract=False,
        mode_options={"baseline": "noise", "offset_s": "1.0"},
    )
    baseline = np.asarray(noise.subject.baseline)
    assert baseline.shape == (RATE,) and 0 < float(np.std(baseline)) < 0.05


def test_unsupported_sample_rate(tmp_path: Path) -> None:
    slow = tmp_path / "slow.wav"
    soundfile.write(str(slow), np.zeros(400, np.float32), 500)
    with pytest.raises(InputError, match="unsupported sample rate 500") as caught:
        explain_sync(slow, str(MODEL), iters=1)
    assert "\n" not in str(caught.value)


def test_unreadable_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF but not really" * 20)
    with pytest.raises(InputError, match="cannot read audio") as caught:
        explain_sync(broken, str(MODEL), iters=1)
    assert "\n" not in str(caught.value)


def test_nan_and_shape_errors() -> None:
    waveform = np.zeros(RATE, np.float32)
    waveform[100] = np.nan
    with pytest.raises(InputError, match="NaN"):
        explain_sync(waveform, str(MODEL), iters=1, mode="audio")
    with pytest.raises(InputError, match="shape"):
        explain_sync(np.zeros((2, 3, 4), np.float32), str(MODEL), iters=1, mode="audio")


def test_mismatched_mode() -> None:
    with pytest.raises(InputError, match="voxel mode reads"):
        explain_sync(EXAMPLE, str(MODEL), iters=1, mode="voxel")
