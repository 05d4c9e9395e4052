"""A long recording explained window by window through one engine: the window the model is
surest of, or every window in turn."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings
from rex_stream.engine.session import open_engine
from rex_stream.errors import ConfigError, raise_first_error
from rex_stream.modes.audio import (
    audio_layout,
    model_rate,
    read_audio,
    resample,
    subject_from_samples,
    window_hop,
    window_starts,
)
from rex_stream.result import Explanation
from rex_stream.runs.rex import explain_input

#: the ways of choosing windows :func:`explain_windows` knows
WINDOW_CHOICES = ("best", "all")


async def score_windows(
    path: Path, backend: Backend, config: ExplainConfig, batch: int = 32
) -> tuple[list[int], np.ndarray, int]:
    """Window starts (samples), the model's scores for every window, and the rate."""
    info = backend.info
    samples, rate = read_audio(path)
    target = model_rate(config)
    samples = resample(samples, rate, target)
    _, time_axis = audio_layout(info.input_shape)
    length = info.input_shape[time_axis]
    if length <= 0 or samples.shape[0] <= length:
        return [0], np.empty((0, 0)), target
    starts = window_starts(samples.shape[0], length, window_hop(length, target, config))
    rows = []
    for first in range(0, len(starts), batch):
        tensors = [
            subject_from_samples(samples[s : s + length], info, config, target).tensor
            for s in starts[first : first + batch]
        ]
        rows.append(np.asarray(await backend.infer(np.stack(tensors))))
    return starts, np.concatenate(rows), target


async def explain_windows(
    path: str | Path,
    backend: Backend | str,
    config: ExplainConfig | None = None,
    *,
    windows: str = "best",
    backend_settings: BackendSettings | None = None,
    **kwargs: Any,
) -> list[Explanation]:
    """Explain a long recording window by window.

    ``windows="best"``: score every window (hop ``hop_s``) and explain the one where the
    model's top class has the highest score; ``"all"``: explain every window in turn. Each
    :class:`Explanation`'s subject is an :class:`~rex_stream.modes.audio.AudioSubject` whose
    ``offset_s`` places it in the file. ``kwargs`` (``store``, ``on_progress`` …) go to every
    window's :func:`~rex_stream.runs.rex.explain_input`.
    """
    if windows not in WINDOW_CHOICES:
        raise ConfigError(f"windows={windows!r}: expected best or all")
    config = config or ExplainConfig()
    path = Path(path)
    results = []
    with raise_first_error():
        async with open_engine(backend, config, backend_settings) as engine:
            starts, scores, rate = await score_windows(path, engine.backend, engine.config)
            if windows == "best" and scores.size:
                wanted = config.scoring.target
                column = scores[:, wanted] if wanted is not None else scores.max(axis=1)
                starts = [starts[int(np.argmax(column))]]
            for start in starts:
                options = {**engine.config.image.mode_options, "offset_s": repr(start / rate)}
                image = replace(engine.config.image, mode_options=options)
                results.append(
                    await explain_input(
                        path,
                        engine.info,
                        engine.scheduler,
                        replace(engine.config, image=image),
                        **kwargs,
                    )
                )
    return results
