"""A three-layer ONNX classifier and a deterministic occlusion explainer for the weight tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.scheduler import Scheduler

SIZE = 16
PATCH = 4


def save_three_layer_model(path: Path, classes: int = 5) -> Path:
    """Conv(3→4) → Relu → GlobalAveragePool → Flatten → MatMul+Add(4→6) → Relu → Gemm(6→5)."""
    rng = np.random.default_rng(7)
    tensors = {
        "conv_w": rng.normal(0, 0.5, (4, 3, 3, 3)),
        "conv_b": rng.normal(0, 0.1, 4),
        "fc_w": rng.normal(0, 1.0, (4, 6)),
        "fc_b": rng.normal(0, 0.1, 6),
        "out_w": rng.normal(0, 1.0, (classes, 6)),
        "out_b": rng.normal(0, 0.1, classes),
    }
    nodes = [
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "fc_w"], ["m"]),
        helper.make_node("Add", ["m", "fc_b"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "out_w", "out_b"], ["logits"], transB=1, name="head"),
    ]
    graph = helper.make_graph(
        nodes,
        "three_layers",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in tensors.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def image() -> np.ndarray:
    """A (3, SIZE, SIZE) input with some structure."""
    rng = np.random.default_rng(11)
    x = rng.uniform(0.0, 0.3, (3, SIZE, SIZE)).astype(np.float32)
    x[:, 4:10, 6:12] += 0.8
    return x


def occluded(x: np.ndarray) -> np.ndarray:
    """x, then x with each PATCH × PATCH square set to 0: (1 + patches, *x.shape)."""
    rows = [x.copy()]
    for top in range(0, SIZE, PATCH):
        for left in range(0, SIZE, PATCH):
            row = x.copy()
            row[:, top : top + PATCH, left : left + PATCH] = 0.0
            rows.append(row)
    return np.stack(rows)


def occlusion_map(logits: np.ndarray, target: int) -> np.ndarray:
    """f(x)_t − f(x without the patch)_t, spread over each patch's pixels."""
    drops = logits[0, target] - logits[1:, target]
    grid = drops.reshape(SIZE // PATCH, SIZE // PATCH)
    return np.kron(grid, np.ones((PATCH, PATCH))).astype(np.float64)


async def occlusion_explainer(
    x: np.ndarray, target: int, scheduler: Scheduler, info: ModelInfo, config: ExplainConfig
) -> np.ndarray:
    """A deterministic re-explainer whose map depends on the model's weights."""
    rows = occluded(x)
    fills = [lambda out, row=row: np.copyto(out, row) for row in rows]
    logits = np.asarray(await scheduler.evaluate(fills), np.float64)
    return occlusion_map(logits, target)
