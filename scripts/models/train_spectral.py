"""Train the spectral demo model: a small 1-D CNN on synthetic spectra → ONNX.

No spectral data set ships inside a package, so the spectra are generated: a smooth random
baseline (low-order polynomial plus a broad hump), 3–7 random Gaussian/Lorentzian peaks, noise,
then z-scored like ReX's sample spectra (../shared/data/spectra, 1356 points). The class is
set by a *marker* peak that the other peaks never overlap:

- class 0 ``none``: no marker peak;
- class 1 ``marker-A``: a peak centred in samples 370–390 (width 8–14);
- class 2 ``marker-B``: a peak centred in samples 890–910 (width 5–9).

Writes rex_stream/data/models/spectral-markers.onnx (input ``input`` (N, 1, 1356) float32 →
``logits`` (N, 3)) and spectral-markers-{none,A,B}.npy sample spectra (1356 points each).

Run: ``/work/rexvenv/bin/python scripts/models/train_spectral.py`` (needs torch, onnx,
numpy; onnxruntime to check the export). Deterministic (seeded).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

OUT = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"
LENGTH = 1356
MARKERS = {1: (370, 390, 8.0, 14.0), 2: (890, 910, 5.0, 9.0)}
KEEP_OUT = 45  # distractor peaks stay this far from a marker window


def _peak(x: np.ndarray, centre: float, width: float, height: float, rng: np.random.Generator):
    if rng.random() < 0.5:
        return height * np.exp(-0.5 * ((x - centre) / width) ** 2)
    return height / (1.0 + ((x - centre) / width) ** 2)


def make_spectrum(label: int, rng: np.random.Generator) -> np.ndarray:
    """One z-scored synthetic spectrum of class ``label``."""
    x = np.arange(LENGTH, dtype=np.float64)
    t = x / LENGTH
    coeffs = rng.normal(0, 1.0, 4)
    spectrum = coeffs[0] + coeffs[1] * t + coeffs[2] * t**2 + coeffs[3] * t**3
    spectrum += rng.uniform(0, 2) * np.exp(-0.5 * ((x - rng.uniform(0, LENGTH)) / 300) ** 2)
    for _ in range(rng.integers(3, 8)):
        while True:
            centre = rng.uniform(20, LENGTH - 20)
            if all(not lo - KEEP_OUT < centre < hi + KEEP_OUT for lo, hi, _, _ in MARKERS.values()):
                break
        spectrum += _peak(x, centre, rng.uniform(4, 40), rng.uniform(0.5, 3.0), rng)
    if label in MARKERS:
        lo, hi, w_lo, w_hi = MARKERS[label]
        centre = rng.uniform(lo, hi)
        spectrum += _peak(x, centre, rng.uniform(w_lo, w_hi), rng.uniform(1.0, 3.0), rng)
    spectrum += rng.normal(0, rng.uniform(0.02, 0.08), LENGTH)
    return (spectrum - spectrum.mean()) / spectrum.std()


def make_set(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` spectra with balanced labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    rng.shuffle(labels)
    spectra = np.stack([make_spectrum(int(y), rng) for y in labels]).astype(np.float32)
    return spectra[:, None, :], labels


class MarkerNet(nn.Module):
    """Conv(1→8, 9, stride 2) → ReLU → MaxPool 4 → Conv(8→16, 9) → ReLU → MaxPool 4 → MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(1, 8, 9, stride=2, padding=4)
        self.conv2 = nn.Conv1d(8, 16, 9, padding=4)
        self.fc1 = nn.Linear(16 * 42, 32)
        self.fc2 = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool1d(torch.relu(self.conv1(x)), 4)  # 1356 → 678 → 169
        x = torch.max_pool1d(torch.relu(self.conv2(x)), 4)  # 169 → 42
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def to_onnx(net: MarkerNet, path: Path) -> None:
    """Write the trained network as an ONNX graph with onnx.helper (no exporter needed)."""
    weights = {k: v.detach().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    nodes = [
        helper.make_node(
            "Conv", ["input", "conv1.weight", "conv1.bias"], ["c1"], pads=[4, 4], strides=[2]
        ),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[4], strides=[4]),
        helper.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], pads=[4, 4]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[4], strides=[4]),
        helper.make_node("Flatten", ["p2"], ["f"]),
        helper.make_node("Gemm", ["f", "fc1.weight", "fc1.bias"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("Gemm", ["hr", "fc2.weight", "fc2.bias"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "spectral_markers",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, LENGTH])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def main() -> None:
    """Generate data, train, export, check the export, save samples."""
    torch.manual_seed(0)
    x_train, y_train = make_set(6000, seed=1)
    x_test, y_test = make_set(1500, seed=2)
    net = MarkerNet()
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    for epoch in range(12):
        order = torch.randperm(len(xt))
        for start in range(0, len(xt), 64):
            batch = order[start : start + 64]
            optimiser.zero_grad()
            loss = nn.functional.cross_entropy(net(xt[batch]), yt[batch])
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            accuracy = (net(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}, test accuracy {accuracy:.4f}")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "spectral-markers.onnx"
    to_onnx(net.eval(), path)

    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": x_test})[0]
    with torch.no_grad():
        reference = net(torch.from_numpy(x_test)).numpy()
    assert np.allclose(logits, reference, atol=1e-3), "ONNX graph disagrees with torch"
    onnx_accuracy = float((logits.argmax(1) == y_test).mean())
    print(f"onnxruntime test accuracy: {onnx_accuracy:.4f} on {len(y_test)} spectra")
    rng = np.random.default_rng(3)
    for label, name in ((0, "none"), (1, "A"), (2, "B")):
        np.save(OUT / f"spectral-markers-{name}.npy", make_spectrum(label, rng))
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
