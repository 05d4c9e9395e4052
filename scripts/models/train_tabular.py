"""Train the tabular demo model: an MLP on scikit-learn's bundled breast-cancer data → ONNX.

Writes, under rex_stream/data/models/:
- tabular-breast-cancer.onnx: input ``input`` (N, 30) float32 → ``probabilities`` (N, 2)
  (class 0 malignant, 1 benign; the standardisation is inside the graph);
- tabular-breast-cancer-train.csv: the training rows (reference for ``baseline=``);
- tabular-breast-cancer-test.csv: the held-out rows, with their ``label`` column last.

Run: ``/work/venv/bin/python scripts/models/train_tabular.py`` (needs scikit-learn, skl2onnx,
onnx, onnxruntime). Deterministic: the split and the MLP are seeded.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

OUT = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"


def write_csv(path: Path, header: list[str], rows: np.ndarray) -> None:
    """Rows of numbers with a header, 6 significant digits."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([[f"{v:.6g}" for v in row] for row in rows])


def main() -> None:
    """Train, convert, check the ONNX model against scikit-learn, and save everything."""
    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    y = data.target
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    model = make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=2000, random_state=0),
    )
    model.fit(x_train, y_train)
    accuracy = model.score(x_test, y_test)

    onx = to_onnx(
        model,
        x_train[:1],
        options={id(model.steps[-1][1]): {"zipmap": False}},
        target_opset=17,
    )
    # keep only the probabilities: rex-stream reads output 0 as the scores
    graph = onx.graph
    keep = [o for o in graph.output if o.name == "probabilities"]
    del graph.output[:]
    graph.output.extend(keep)
    onnx.checker.check_model(onx)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "tabular-breast-cancer.onnx"
    onnx.save(onx, str(path))

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    probabilities = session.run(None, {name: x_test})[0]
    onnx_accuracy = float((probabilities.argmax(1) == y_test).mean())
    assert np.allclose(probabilities, model.predict_proba(x_test), atol=1e-4)

    names = [str(n) for n in data.feature_names]
    write_csv(OUT / "tabular-breast-cancer-train.csv", names, x_train)
    write_csv(
        OUT / "tabular-breast-cancer-test.csv",
        [*names, "label"],
        np.concatenate([x_test, y_test[:, None]], axis=1),
    )
    print(f"input {name!r}; train {len(x_train)}, test {len(x_test)} rows")
    print(f"test accuracy: scikit-learn {accuracy:.4f}, onnxruntime {onnx_accuracy:.4f}")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
