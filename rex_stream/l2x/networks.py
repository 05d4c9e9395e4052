"""Small MLPs in numpy + autograd: the selector, the approximator, Adam, relaxed top-k."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from rex_stream.engine.install_hint import install_command
from rex_stream.errors import ConfigError


def autograd_modules() -> tuple[Any, Any]:
    """``(autograd.numpy, autograd.grad)``, or a clear error when the extra is missing."""
    try:
        import autograd.numpy as anp
        from autograd import grad
    except ImportError as exc:
        raise ConfigError(f"L2X training needs autograd: {install_command('l2x')}") from exc
    return anp, grad


def layer_shapes(sizes: list[int]) -> list[tuple[int, int]]:
    """Weight shapes of an MLP with these layer widths."""
    return list(itertools.pairwise(sizes))


def init_mlp(sizes: list[int], rng: np.random.Generator) -> np.ndarray:
    """He-initialised weights (zero biases), flattened into one vector."""
    parts = []
    for fan_in, fan_out in layer_shapes(sizes):
        parts.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), fan_in * fan_out))
        parts.append(np.zeros(fan_out))
    return np.concatenate(parts)


def mlp(flat: Any, sizes: list[int], inputs: Any, xp: Any = np) -> Any:
    """The MLP's outputs for ``inputs`` (ReLU between layers); ``xp`` is numpy or autograd's."""
    position = 0
    hidden = inputs
    shapes = layer_shapes(sizes)
    for index, (fan_in, fan_out) in enumerate(shapes):
        weights = xp.reshape(flat[position : position + fan_in * fan_out], (fan_in, fan_out))
        position += fan_in * fan_out
        bias = flat[position : position + fan_out]
        position += fan_out
        hidden = xp.dot(hidden, weights) + bias
        if index < len(shapes) - 1:
            hidden = xp.maximum(hidden, 0.0)
    return hidden


def mlp_size(sizes: list[int]) -> int:
    """Number of parameters of an MLP with these layer widths."""
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in layer_shapes(sizes))


def shared_region_logits(flat: Any, sizes: list[int], features: Any, xp: Any = np) -> Any:
    """A selector with the same weights for every region: ``(B, R, F)`` features → ``(B, R)``
    logits (``sizes`` from ``F`` to 1). Where the object may lie anywhere (a blob in a volume),
    what it learns in one region holds in all of them."""
    batch, count, width = features.shape
    rows = xp.reshape(features, (batch * count, width))
    return xp.reshape(mlp(flat, sizes, rows, xp), (batch, count))


def pooled_regions(
    flat: Any, encoder: list[int], head: list[int], inputs: Any, xp: Any = np
) -> Any:
    """An approximator with one encoder for every region: each region's ``(F + 1)`` inputs
    are encoded alike, pooled over the regions (max and mean), and a head gives the classes."""
    batch, count, width = inputs.shape
    split = mlp_size(encoder)
    rows = xp.reshape(inputs, (batch * count, width))
    encoded = xp.maximum(mlp(flat[:split], encoder, rows, xp), 0.0)
    encoded = xp.reshape(encoded, (batch, count, encoder[-1]))
    pooled = xp.concatenate([xp.max(encoded, axis=1), xp.mean(encoded, axis=1)], axis=1)
    return mlp(flat[split:], head, pooled, xp)


def log_softmax(values: Any, xp: Any = np) -> Any:
    """Row-wise log-softmax."""
    shifted = values - xp.max(values, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def relaxed_top_k(logits: Any, k: int, temperature: float, gumbel: np.ndarray, xp: Any) -> Any:
    """L2X's soft k-hot mask: the elementwise max of ``k`` Gumbel-softmax draws.

    ``gumbel`` is ``(batch, k, regions)`` Gumbel noise drawn by the caller (seeded).
    """
    scores = (logits[:, None, :] + gumbel) / temperature
    draws = xp.exp(log_softmax(scores, xp))
    return xp.max(draws, axis=1)


def gumbel_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard Gumbel noise."""
    uniform = rng.uniform(1e-10, 1.0, shape)
    return -np.log(-np.log(uniform))


@dataclass
class Adam:
    """Adam on a flat parameter vector; its state is three vectors and a step count."""

    learning_rate: float
    first: np.ndarray
    second: np.ndarray
    step: int = 0

    @classmethod
    def start(cls, size: int, learning_rate: float) -> Adam:
        """Fresh moments."""
        return cls(learning_rate, np.zeros(size), np.zeros(size))

    def update(self, params: np.ndarray, gradient: np.ndarray) -> np.ndarray:
        """One step; returns the new parameters."""
        self.step += 1
        self.first = 0.9 * self.first + 0.1 * gradient
        self.second = 0.999 * self.second + 0.001 * gradient**2
        first = self.first / (1 - 0.9**self.step)
        second = self.second / (1 - 0.999**self.step)
        return params - self.learning_rate * first / (np.sqrt(second) + 1e-8)
