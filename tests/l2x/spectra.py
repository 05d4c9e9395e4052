"""Synthetic spectra like the ones ``spectral-markers.onnx`` was trained on (the generator of
``scripts/models/train_spectral.py``, without its torch import), for held-out data in tests."""

from __future__ import annotations

import numpy as np

LENGTH = 1356
MARKERS = {1: (370, 390, 8.0, 14.0), 2: (890, 910, 5.0, 9.0)}
KEEP_OUT = 45


def _peak(x: np.ndarray, centre: float, width: float, height: float, rng: np.random.Generator):
    if rng.random() < 0.5:
        return height * np.exp(-0.5 * ((x - centre) / width) ** 2)
    return height / (1.0 + ((x - centre) / width) ** 2)


def make_spectrum(label: int, rng: np.random.Generator) -> np.ndarray:
    """One z-scored synthetic spectrum of class ``label``."""
    x = np.arange(LENGTH, dtype=np.float64)
    t = x / LENGTH
    coeffs = rng.normal(0, 1.0, 4)
    spectrum = coeffs[0] + coeffs[1] * t + coeffs[2] * t**2 + coeffs[3] * t**3
    spectrum += rng.uniform(0, 2) * np.exp(-0.5 * ((x - rng.uniform(0, LENGTH)) / 300) ** 2)
    for _ in range(rng.integers(3, 8)):
        while True:
            centre = rng.uniform(20, LENGTH - 20)
            if all(not lo - KEEP_OUT < centre < hi + KEEP_OUT for lo, hi, _, _ in MARKERS.values()):
                break
        spectrum += _peak(x, centre, rng.uniform(4, 40), rng.uniform(0.5, 3.0), rng)
    if label in MARKERS:
        lo, hi, w_lo, w_hi = MARKERS[label]
        spectrum += _peak(
            x, rng.uniform(lo, hi), rng.uniform(w_lo, w_hi), rng.uniform(1.0, 3.0), rng
        )
    spectrum += rng.normal(0, rng.uniform(0.02, 0.08), LENGTH)
    return (spectrum - spectrum.mean()) / spectrum.std()


def make_set(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` spectra ``(count, LENGTH)`` float32 with balanced labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    rng.shuffle(labels)
    spectra = np.stack([make_spectrum(int(y), rng) for y in labels]).astype(np.float32)
    return spectra, labels
