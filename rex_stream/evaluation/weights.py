"""A local ONNX model as weights: its layers, and variants with some weights replaced.

A *layer* is a node that holds trained parameters in the graph's initializers, in graph order:
Conv, ConvTranspose, Gemm and MatMul (weight, and bias: the node's own bias input or, after a
MatMul, the 1-D initializer of the one Add it feeds), and BatchNormalization,
LayerNormalization and InstanceNormalization (scale and bias; BatchNormalization's running mean
and variance too). An initializer shared by several nodes belongs to the first.

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

A variant is written to a temporary file and opened through the glue's
:func:`~rex_stream.runs.rex.backend_for_run` like any model; the file is removed when the
backend is closed. A run killed with SIGKILL cannot remove its files: their folders are named
after the process and host that made them, and the next run on the host removes those whose
process is gone.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings, backend_kind
from rex_stream.engine.session import backend_for_run
from rex_stream.errors import ConfigError

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

#: Roles of a layer op's initializer inputs, by input position.
LAYER_INPUTS: dict[str, dict[int, str]] = {
    "Conv": {1: "weight", 2: "bias"},
    "ConvTranspose": {1: "weight", 2: "bias"},
    "Gemm": {0: "weight", 1: "weight", 2: "bias"},
    "MatMul": {0: "weight", 1: "weight"},
    "BatchNormalization": {1: "scale", 2: "bias", 3: "mean", 4: "var"},
    "LayerNormalization": {1: "scale", 2: "bias"},
    "InstanceNormalization": {1: "scale", 2: "bias"},
}
#: What a reset sets each role of a normalisation layer to.
RESET_CONSTANTS = {"scale": 1.0, "bias": 0.0, "mean": 0.0, "var": 1.0}
#: Roles that are torch buffers, not parameters: noise leaves them alone.
BUFFERS = ("mean", "var")
LAYER_ORDERS = ("top_down", "bottom_up", "independent")
NOISE_TYPES = ("multiplicative", "additive")
#: The temporary folders of variants: ``<prefix><pid>@<host>-<random>``.
VARIANT_PREFIX = "rex-stream-weights-"
#: Above this many bytes a variant keeps its tensors in an external-data file (protobuf's
#: 2 GiB limit).
EXTERNAL_DATA_BYTES = 1 << 30

Weights = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Layer:
    """One layer: the node's name and op, its initializers with their roles, its fan-in."""

    name: str
    op: str
    tensors: tuple[str, ...]
    roles: tuple[str, ...]
    fan_in: int


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
        self.layers = _find_layers(model, self._positions)
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
        onnx = _onnx()
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
        onnx = _onnx()
        from onnx import numpy_helper

        variant = onnx.ModelProto()
        variant.CopyFrom(self.proto)
        for name, value in replacements.items():
            position = self._positions.get(name)
            if position is None:
                raise ConfigError(f"{self.name} has no initializer {name!r}")
            variant.graph.initializer[position].CopyFrom(numpy_helper.from_array(value, name))
        return variant


@asynccontextmanager
async def open_variant(
    model: WeightedModel,
    replacements: Weights,
    config: ExplainConfig,
    settings: BackendSettings | None,
) -> AsyncIterator[tuple[Backend, ExplainConfig]]:
    """The model with ``replacements`` as an opened backend (a temporary file, removed after)."""
    global _swept
    if not _swept:
        _swept = True
        await anyio.to_thread.run_sync(remove_orphaned_variants)
    owner = f"{os.getpid()}@{socket.gethostname()}"
    with tempfile.TemporaryDirectory(prefix=f"{VARIANT_PREFIX}{owner}-") as folder:
        path = Path(folder) / model.name
        if not path.name.endswith(".onnx"):
            path = path.with_name(path.name + ".onnx")
        await anyio.to_thread.run_sync(_save, model, replacements, path)
        async with backend_for_run(str(path), config, settings) as opened:
            yield opened


_swept = False  # orphaned variants are looked for once per process


def remove_orphaned_variants(folder: str | Path | None = None) -> list[Path]:
    """Remove the variant folders that killed runs on this host left in ``folder`` (the
    temporary folder by default): those whose process is gone. Returns what was removed."""
    if os.name == "nt":  # os.kill(pid, 0) is no liveness probe there
        return []
    host = socket.gethostname()
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{VARIANT_PREFIX}*"):
        owner = path.name[len(VARIANT_PREFIX) :].rpartition("-")[0]
        pid, at, made_on = owner.partition("@")
        if not at or made_on != host or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        logger.info("removed %s, left by a killed run (process %s)", path, pid)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # not ours to signal, or unknown: assume it lives
        return True
    return True


def _save(model: WeightedModel, replacements: Weights, path: Path) -> None:
    onnx = _onnx()
    variant = model.with_weights(replacements)
    large = variant.ByteSize() > EXTERNAL_DATA_BYTES
    onnx.save_model(variant, str(path), save_as_external_data=large)


def _find_layers(model: onnx.ModelProto, positions: Mapping[str, int]) -> list[Layer]:
    """The layers in graph order (see the module's docstring)."""
    from onnx import TensorProto

    initializers = model.graph.initializer
    floating = {
        name
        for name, i in positions.items()
        if initializers[i].data_type
        in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
    }
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    taken: set[str] = set()
    layers: list[Layer] = []
    for number, node in enumerate(model.graph.node):
        roles = LAYER_INPUTS.get(node.op_type)
        if roles is None:
            continue
        found: list[tuple[str, str, int]] = []
        for position, role in roles.items():
            if position < len(node.input):
                name = node.input[position]
                if name in floating and name not in taken:
                    found.append((name, role, position))
        if node.op_type == "MatMul" and found:
            bias = _following_bias(node, consumers, floating, taken)
            if bias is not None:
                found.append((bias, "bias", 2))
        if not any(role in ("weight", "scale") for _, role, _ in found):
            continue
        taken.update(name for name, _, _ in found)
        layers.append(
            Layer(
                name=node.name or f"{node.op_type}_{number}",
                op=node.op_type,
                tensors=tuple(name for name, _, _ in found),
                roles=tuple(role for _, role, _ in found),
                fan_in=_fan_in(node, found, initializers, positions),
            )
        )
    return layers


def _following_bias(
    node: Any, consumers: Mapping[str, list[Any]], floating: set[str], taken: set[str]
) -> str | None:
    """The 1-D initializer added to a MatMul's output by the one Add it feeds (a Linear)."""
    users = consumers.get(node.output[0], [])
    if len(users) != 1 or users[0].op_type != "Add":
        return None
    others = [name for name in users[0].input if name != node.output[0]]
    if len(others) == 1 and others[0] in floating and others[0] not in taken:
        return str(others[0])
    return None


def _fan_in(
    node: Any,
    found: Sequence[tuple[str, str, int]],
    initializers: Any,
    positions: Mapping[str, int],
) -> int:
    """Inputs feeding one output unit, as torch's ``_calculate_fan_in_and_fan_out`` counts."""
    weight = next(((name, position) for name, role, position in found if role == "weight"), None)
    if weight is None:
        return 1
    dims = list(initializers[positions[weight[0]]].dims)
    if not dims:
        return 1
    if node.op_type in ("Conv", "ConvTranspose"):
        return int(np.prod(dims[1:])) if len(dims) > 1 else 1
    if node.op_type == "Gemm":
        transposed = any(
            a.name == ("transB" if weight[1] == 1 else "transA") and a.i for a in node.attribute
        )
        if weight[1] == 1:  # B is (K, N), or (N, K) with transB
            return int(dims[-1] if transposed else dims[0])
        return int(dims[0] if transposed else dims[-1])  # A is (M, K), or (K, M) with transA
    if node.op_type == "MatMul":  # x @ W: W is (…, K, N); W @ x: W is (…, M, K)
        return int(dims[-2] if weight[1] == 1 and len(dims) > 1 else dims[-1])
    return 1


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ConfigError(
            "rewriting model weights needs the onnx package: pip install 'rex-stream[evaluation]'"
        ) from None
    return onnx
