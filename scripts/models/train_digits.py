"""Train the digits model for CEM/L2X tests: an MLP on scikit-learn's bundled 8×8 digits → ONNX.

Writes, under rex_stream/data/models/:
- digits-mlp.onnx: input ``input`` (N, 1, 8, 8) float32, pixels in [0, 1] (the data's 0–16
  divided by 16) → ``logits`` (N, 10); a Reshape, then Dense 64 → 64 (ReLU) → 10, written with
  onnx.helper from the trained weights;
- digits-train.npy, digits-test.npy: the 70/30 split's images as uint8 0–16, (N, 8, 8);
- digits-test-labels.npy: the test labels (uint8).

Run: ``python scripts/models/train_digits.py`` (needs scikit-learn, onnx, onnxruntime).
Deterministic: the split and the MLP are seeded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

OUT = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"


def to_onnx(model: MLPClassifier, path: Path) -> None:
    """The MLP as an ONNX graph over (N, 1, 8, 8) inputs."""
    (w1, w2), (b1, b2) = model.coefs_, model.intercepts_
    inits = [
        numpy_helper.from_array(np.array([-1, 64], np.int64), "shape"),
        numpy_helper.from_array(w1.astype(np.float32), "w1"),
        numpy_helper.from_array(b1.astype(np.float32), "b1"),
        numpy_helper.from_array(w2.astype(np.float32), "w2"),
        numpy_helper.from_array(b2.astype(np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Reshape", ["input", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w1"], ["h1"]),
        helper.make_node("Add", ["h1", "b1"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["h3"]),
        helper.make_node("MatMul", ["h3", "w2"], ["h4"]),
        helper.make_node("Add", ["h4", "b2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 8
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, path)


def main() -> None:
    """Train, convert, check the ONNX model against scikit-learn, and save everything."""
    digits = load_digits()
    images = digits.images.astype(np.uint8)
    train, test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.3, random_state=0, stratify=digits.target
    )
    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=600, random_state=0)
    model.fit(train.reshape(len(train), -1) / 16.0, y_train)
    accuracy = model.score(test.reshape(len(test), -1) / 16.0, y_test)
    path = OUT / "digits-mlp.onnx"
    to_onnx(model, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = (test[:, None] / 16.0).astype(np.float32)
    logits = session.run(None, {"input": inputs})[0]
    reference = model.predict_proba(test.reshape(len(test), -1) / 16.0)
    assert (logits.argmax(1) == reference.argmax(1)).all()
    np.save(OUT / "digits-train.npy", train)
    np.save(OUT / "digits-test.npy", test)
    np.save(OUT / "digits-test-labels.npy", y_test.astype(np.uint8))
    print(f"test accuracy {accuracy:.4f}; {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
