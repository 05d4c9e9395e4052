"""A local ONNX model as weights, and the variants of it that the weight metrics ask for.

Variants (every random draw seeded, so a variant is the same on every run):

- **randomised layers** (MPRT): a layer's values are replaced as PyTorch's ``reset_parameters``
  would re-initialise it (what Quantus calls on a torch model): weights and biases of
  Conv/Gemm/MatMul ~ U(−1/√fan_in, 1/√fan_in) (Kaiming-uniform with a = √5), normalisation
  scales 1, biases 0, running means 0 and variances 1. Each layer draws from its own generator,
  seeded by (seed, layer index), so a layer's new values do not depend on the order in which
  the cascade reaches it.
- **noise** (MetaQuantus' model-perturbation test): every parameter of every layer (not
  BatchNormalization's running statistics, which are buffers, not parameters, in torch)
  × N(1, σ) (``multiplicative``) or + N(0, σ) (``additive``).

The layers are :mod:`~rex_stream.evaluation.variants.layers`'; a variant is opened as a model
by :mod:`~rex_stream.evaluation.variants.files`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rex_stream.engine.backend import backend_kind
from rex_stream.errors import ConfigError
from rex_stream.evaluation.variants.layers import LAYER_INPUTS, find_layers, load_onnx

if TYPE_CHECKING:
    import onnx

#: What a reset sets each role of a normalisation layer to.
RESET_CONSTANTS = {"scale": 1.0, "bias": 0.0, "mean": 0.0, "var": 1.0}
#: Roles that are torch buffers, not parameters: noise leaves them alone.
BUFFERS = ("mean", "var")
LAYER_ORDERS = ("top_down", "bottom_up", "independent")
NOISE_TYPES = ("multiplicative", "additive")

#: Replacement values of initializers, by name.
Weights = Mapping[str, np.ndarray]


def local_model(spec: object, metric: str = "MPRT") -> Path:
    """The path of a local ONNX model file; a one-line ConfigError for anything else."""
    if not isinstance(spec, (str, Path)):
        raise ConfigError(
            f"{metric} needs a local ONNX model (--model model.onnx) to rewrite its weights; "
            f"got an opened {type(spec).__name__}"
        )
    text = str(spec)
    kind = backend_kind(text)
    if kind != "onnx":
        raise ConfigError(
            f"{metric} needs a local ONNX model (--model model.onnx) to rewrite its weights; "
            f"{text!r} is a {kind} backend, whose weights rex-stream cannot reach"
        )
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"{text}: no such model file")
    return path


class WeightedModel:
    """An ONNX model held in memory with its layers; makes variants of it."""

    def __init__(self, model: onnx.ModelProto, name: str = "model") -> None:
        from onnx import numpy_helper

        self.proto = model
        self.name = name
        self._positions = {t.name: i for i, t in enumerate(model.graph.initializer)}
        self.layers = find_layers(model, self._positions)
        if not self.layers:
            raise ConfigError(
                f"{name}: no layer with weights among its initializers (looked for "
                f"{', '.join(LAYER_INPUTS)}); nothing to randomise"
            )
        self.originals: dict[str, np.ndarray] = {
            tensor: numpy_helper.to_array(model.graph.initializer[self._positions[tensor]])
            for layer in self.layers
            for tensor in layer.tensors
        }

    @classmethod
    def load(cls, path: str | Path) -> WeightedModel:
        """Read a model file (with its external data, if any)."""
        onnx = load_onnx()
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # protobuf's DecodeError and friends
            raise ConfigError(f"{path} is not a readable ONNX model: {exc}") from exc
        return cls(model, Path(path).name)

    # -- variants --------------------------------------------------------------------------

    def randomised_layer(self, index: int, seed: int) -> dict[str, np.ndarray]:
        """New values for every tensor of layer ``index`` (a seeded reset)."""
        layer = self.layers[index]
        rng = np.random.default_rng([seed, index])
        bound = 1.0 / math.sqrt(max(layer.fan_in, 1))
        values: dict[str, np.ndarray] = {}
        for tensor, role in zip(layer.tensors, layer.roles):
            original = self.originals[tensor]
            if role in ("weight", "bias") and layer.op in (
                "Conv",
                "ConvTranspose",
                "Gemm",
                "MatMul",
            ):
                drawn = rng.uniform(-bound, bound, size=original.shape)
            else:
                drawn = np.full(original.shape, RESET_CONSTANTS[role])
            values[tensor] = drawn.astype(original.dtype)
        return values

    def cascade(self, order: str, seed: int) -> list[tuple[str, frozenset[int]]]:
        """The steps of MPRT's randomisation: (layer name, indices of the layers randomised).

        ``top_down`` randomises from the output layer down, cumulatively; ``bottom_up`` from
        the input layer up; ``independent`` one layer at a time, the others as trained.
        """
        if order not in LAYER_ORDERS:
            raise ConfigError(f"layer_order={order!r}: use one of {', '.join(LAYER_ORDERS)}")
        indices = list(range(len(self.layers)))
        if order == "top_down":
            indices.reverse()
        steps = []
        for step, index in enumerate(indices):
            chosen = {index} if order == "independent" else set(indices[: step + 1])
            steps.append((self.layers[index].name, frozenset(chosen)))
        return steps

    def randomised(self, layers: Iterable[int], seed: int) -> dict[str, np.ndarray]:
        """Replacements for the model with ``layers`` randomised."""
        values: dict[str, np.ndarray] = {}
        for index in sorted(layers):
            values.update(self.randomised_layer(index, seed))
        return values

    def noisy(
        self, sigma: float, noise_type: str, rng: np.random.Generator
    ) -> dict[str, np.ndarray]:
        """Replacements with every layer parameter perturbed by N(1, σ)× or + N(0, σ)."""
        if noise_type not in NOISE_TYPES:
            raise ConfigError(f"noise_type={noise_type!r}: use one of {', '.join(NOISE_TYPES)}")
        if not sigma > 0:
            raise ConfigError(f"the weight noise σ must be > 0, got {sigma}")
        values: dict[str, np.ndarray] = {}
        for layer in self.layers:
            for tensor, role in zip(layer.tensors, layer.roles):
                if role in BUFFERS:
                    continue
                original = self.originals[tensor]
                wide = original.astype(np.float64)
                if noise_type == "multiplicative":
                    changed = wide * rng.normal(1.0, sigma, size=original.shape)
                else:
                    changed = wide + rng.normal(0.0, sigma, size=original.shape)
                values[tensor] = changed.astype(original.dtype)
        return values

    def with_weights(self, replacements: Weights) -> onnx.ModelProto:
        """A copy of the model with the named initializers replaced."""
        onnx = load_onnx()
        from onnx import numpy_helper

        variant = onnx.ModelProto()
        variant.CopyFrom(self.proto)
        for name, value in replacements.items():
            position = self._positions.get(name)
            if position is None:
                raise ConfigError(f"{self.name} has no initializer {name!r}")
            variant.graph.initializer[position].CopyFrom(numpy_helper.from_array(value, name))
        return variant
