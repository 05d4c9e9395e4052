"""The layers of an ONNX model: the nodes holding trained parameters in its initializers.

A *layer* is a node that holds trained parameters in the graph's initializers, in graph order:
Conv, ConvTranspose, Gemm and MatMul (weight, and bias: the node's own bias input or, after a
MatMul, the 1-D initializer of the one Add it feeds), and BatchNormalization,
LayerNormalization and InstanceNormalization (scale and bias; BatchNormalization's running mean
and variance too). An initializer shared by several nodes belongs to the first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rex_stream.errors import ConfigError

if TYPE_CHECKING:
    import onnx

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


@dataclass(frozen=True)
class Layer:
    """One layer: the node's name and op, its initializers with their roles, its fan-in."""

    name: str
    op: str
    tensors: tuple[str, ...]
    roles: tuple[str, ...]
    fan_in: int


def find_layers(model: onnx.ModelProto, positions: Mapping[str, int]) -> list[Layer]:
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


def load_onnx() -> Any:
    """The onnx package, or a one-line ConfigError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise ConfigError(
            "rewriting model weights needs the onnx package: pip install 'rex-stream[evaluation]'"
        ) from None
    return onnx
