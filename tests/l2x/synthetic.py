"""L2X's synthetic benchmark sets (Chen et al. 2018): inputs, true features, and the true
class probabilities as a black-box model (a Python function served by the python adapter)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FEATURES = 10


def _xor(x: np.ndarray) -> np.ndarray:
    return np.exp(x[:, 0] * x[:, 1])


def _orange_skin(x: np.ndarray) -> np.ndarray:
    return np.exp(np.sum(x[:, :4] ** 2, axis=1) - 4.0)


def _additive(x: np.ndarray) -> np.ndarray:
    return np.exp(-100 * np.sin(0.2 * x[:, 0]) + np.abs(x[:, 1]) + x[:, 2] + np.exp(-x[:, 3]) - 2.4)


def _switch(x: np.ndarray) -> np.ndarray:
    """Orange skin on features 0–3 when feature 4 is positive, else additive on 5–8."""
    orange = _orange_skin(x)
    shifted = np.concatenate([x[:, 5:9], x[:, :6]], axis=1)
    return np.where(x[:, 4] > 0, orange, _additive(shifted))


#: name → (odds function, true features of each row)
SETS: dict[
    str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], list[set[int]]]]
] = {
    "xor": (_xor, lambda x: [{0, 1}] * len(x)),
    "orange_skin": (_orange_skin, lambda x: [{0, 1, 2, 3}] * len(x)),
    "additive": (_additive, lambda x: [{0, 1, 2, 3}] * len(x)),
    "switch": (
        _switch,
        lambda x: [{0, 1, 2, 3, 4} if v > 0 else {4, 5, 6, 7, 8} for v in x[:, 4]],
    ),
}


def make(name: str, count: int, seed: int) -> np.ndarray:
    """``count`` rows of standard normal features."""
    return np.random.default_rng(seed).standard_normal((count, FEATURES)).astype(np.float32)


def model(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The set's true class probabilities ``(n, 2)`` as a scoring function."""
    odds = SETS[name][0]

    def probabilities(batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, np.float64).reshape(len(batch), FEATURES)
        p = 1.0 / (1.0 + np.clip(odds(x), 1e-12, 1e12))
        return np.stack([p, 1.0 - p], axis=1)

    return probabilities
