"""Small real ONNX classifiers for tests, built with onnx.helper (fixed, seeded weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PATCH = (slice(6, 12), slice(14, 20))  # rows, cols of the planted patch in a 24 × 24 image


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def save_tiny_cnn(path: Path, size: int = 32, classes: int = 10) -> Path:
    """Conv(3→8, 3×3) → Relu → GlobalAveragePool → Flatten → Gemm(8→classes)."""
    rng = np.random.default_rng(1234)
    conv_w = rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32)
    conv_b = rng.normal(0, 0.1, 8).astype(np.float32)
    gemm_w = rng.normal(0, 1.0, (classes, 8)).astype(np.float32)
    gemm_b = rng.normal(0, 0.1, classes).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "gemm_w", "gemm_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [
            numpy_helper.from_array(conv_w, "conv_w"),
            numpy_helper.from_array(conv_b, "conv_b"),
            numpy_helper.from_array(gemm_w, "gemm_w"),
            numpy_helper.from_array(gemm_b, "gemm_b"),
        ],
    )
    return _save(graph, path)


def patch_weights(size: int = 24) -> np.ndarray:
    """The weight map of the patch model: ones on the patch, zero elsewhere."""
    weights = np.zeros((1, 1, size, size), np.float32)
    weights[(0, 0, *PATCH)] = 1.0
    return weights


def save_patch_model(path: Path, size: int = 24) -> Path:
    """logits = [2, 1/9 · Σ patch pixels]: class 1 when the bright patch (≥ 0.5) is seen.

    Input (N, 1, size, size) greyscale in [0, 1]. The patch has 36 pixels, so class 1 needs
    more than about half of it visible and bright.
    """
    weights = patch_weights(size) / 9.0
    nodes = [
        helper.make_node("Mul", ["input", "w"], ["m"]),
        helper.make_node("ReduceSum", ["m", "axes"], ["s"], keepdims=0),
        helper.make_node("Reshape", ["s", "col"], ["s2"]),
        helper.make_node("Concat", ["base", "s2"], ["logits"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "patch",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [
            numpy_helper.from_array(weights, "w"),
            numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
            numpy_helper.from_array(np.array([-1, 1], np.int64), "col"),
        ],
    )
    # the constant logit 2 for class 0, broadcast to the batch: 0·s + 2
    graph.node.insert(3, helper.make_node("Mul", ["s2", "zero"], ["z"]))
    graph.node.insert(4, helper.make_node("Add", ["z", "two"], ["base"]))
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
            numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        ]
    )
    return _save(graph, path)


def planted_image(size: int = 24) -> np.ndarray:
    """A (1, size, size) dim, noisy image with the bright patch the patch model looks for."""
    rng = np.random.default_rng(5)
    image = rng.uniform(0.0, 0.2, (1, size, size)).astype(np.float32)
    image[(0, *PATCH)] = 1.0
    return image


#: The two patches of the two-patch model: either one alone makes the model say class 1.
PATCHES = ((slice(2, 8), slice(2, 8)), (slice(15, 21), slice(14, 20)))


def save_two_patch_model(path: Path, size: int = 24) -> Path:
    """logits = [2, max(Σ patch A, Σ patch B) / 9]: class 1 when either bright patch is seen.

    Input (N, 1, size, size) greyscale in [0, 1]; each patch has 36 pixels, so either one,
    more than about half visible, suffices on its own: two disjoint sufficient explanations.
    """
    weights = []
    for patch in PATCHES:
        w = np.zeros((1, 1, size, size), np.float32)
        w[(0, 0, *patch)] = 1.0 / 9.0
        weights.append(w)
    nodes = [
        helper.make_node("Mul", ["input", "wa"], ["ma"]),
        helper.make_node("ReduceSum", ["ma", "axes"], ["sa"], keepdims=0),
        helper.make_node("Mul", ["input", "wb"], ["mb"]),
        helper.make_node("ReduceSum", ["mb", "axes"], ["sb"], keepdims=0),
        helper.make_node("Max", ["sa", "sb"], ["s"]),
        helper.make_node("Reshape", ["s", "col"], ["s2"]),
        helper.make_node("Mul", ["s2", "zero"], ["z"]),
        helper.make_node("Add", ["z", "two"], ["base"]),
        helper.make_node("Concat", ["base", "s2"], ["logits"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "two_patches",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [
            numpy_helper.from_array(weights[0], "wa"),
            numpy_helper.from_array(weights[1], "wb"),
            numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
            numpy_helper.from_array(np.array([-1, 1], np.int64), "col"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
            numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        ],
    )
    return _save(graph, path)


def two_patch_image(size: int = 24) -> np.ndarray:
    """A (1, size, size) dim, noisy image with both bright patches of the two-patch model."""
    rng = np.random.default_rng(7)
    image = rng.uniform(0.0, 0.2, (1, size, size)).astype(np.float32)
    for patch in PATCHES:
        image[(0, *patch)] = 1.0
    return image
