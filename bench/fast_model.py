"""A fast stand-in for an ImageNet classifier, for benches where the network, not the model,
should be the cost: ``(N, 3, 224, 224) → (N, 1000)`` logits.

AveragePool 8×8 → Flatten (2352) → Gemm(2352 → 256) → Relu → Gemm(256 → 1000), seeded random
weights (about 0.9 M multiply-adds per image, ~4000 images/s on one CPU core). Its decision
depends on where things are in the photo, so a search over boxes behaves like a real one.

    python bench/fast_model.py /tmp/fast.onnx
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def save_fast_model(path: Path, size: int = 224, classes: int = 1000, seed: int = 7) -> Path:
    """Write the model to ``path`` and return it."""
    rng = np.random.default_rng(seed)
    pooled = 3 * (size // 8) ** 2
    w1 = rng.normal(0, 1 / np.sqrt(pooled), (256, pooled)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 256).astype(np.float32)
    w2 = rng.normal(0, 3 / np.sqrt(256), (classes, 256)).astype(np.float32)
    b2 = rng.normal(0, 0.1, classes).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["input"], ["p"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "fast_imagenet_stand_in",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        [
            numpy_helper.from_array(a, n)
            for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


if __name__ == "__main__":
    print(save_fast_model(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/fast.onnx")))
