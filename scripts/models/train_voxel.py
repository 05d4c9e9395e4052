"""Train the bundled voxel model: a tiny 3-D CNN that tells noisy volumes with a bright blob
from volumes without one, and export it to ONNX (dynamic batch).

Data are generated here (no download): smooth correlated noise (Gaussian-filtered white noise,
like scanner texture), a slow intensity gradient, and in half the volumes one bright Gaussian
blob of random radius, position and contrast. Class 0: no blob, class 1: blob.

Run with a Python that has torch, onnx and scipy::

    /work/rexvenv/bin/python scripts/models/train_voxel.py [--out rex_stream/data/models]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch import nn

SIZE = 32


def make_volume(rng: np.random.Generator, blob: bool) -> tuple[np.ndarray, tuple[int, ...]]:
    """One (SIZE³) float32 volume, and the blob centre (or () without one)."""
    noise = gaussian_filter(rng.normal(0.0, 1.0, (SIZE,) * 3), sigma=rng.uniform(0.8, 1.6))
    noise = noise / (noise.std() + 1e-6) * rng.uniform(0.15, 0.3)
    grid = np.stack(np.meshgrid(*(np.arange(SIZE),) * 3, indexing="ij"))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    gradient = np.tensordot(direction, grid, axes=1) / SIZE * rng.uniform(0.0, 0.3)
    volume = noise + gradient - gradient.mean()
    centre: tuple[int, ...] = ()
    if blob:
        radius = rng.uniform(2.0, 4.5)
        centre = tuple(int(c) for c in rng.integers(5, SIZE - 5, size=3))
        distance2 = sum((g - c) ** 2 for g, c in zip(grid, centre))
        volume = volume + rng.uniform(0.6, 1.2) * np.exp(-distance2 / (2 * radius**2))
    return volume.astype(np.float32), centre


def make_set(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` volumes (N, 1, SIZE, SIZE, SIZE) and labels, half with a blob."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    volumes = np.stack([make_volume(rng, bool(label))[0] for label in labels])[:, None]
    return volumes, labels


class BlobNet(nn.Module):
    """Three 3×3×3 conv blocks and a global max pool: the decision stays local."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool3d(2),
            nn.Conv3d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool3d(2),
            nn.Conv3d(16, 16, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 2)."""
        features = self.features(x).amax(dim=(2, 3, 4))
        return self.head(features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("rex_stream/data/models"))
    parser.add_argument("--train", type=int, default=1600)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    x_train, y_train = make_set(args.train, seed=1)
    x_test, y_test = make_set(400, seed=2)
    model = BlobNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for epoch in range(args.epochs):
        order = torch.randperm(len(xt))
        model.train()
        for start in range(0, len(xt), 32):
            rows = order[start : start + 32]
            loss = nn.functional.cross_entropy(model(xt[rows]), yt[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean()
        print(f"epoch {epoch}: loss {loss.item():.3f} test accuracy {accuracy:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "voxel-blob32.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, SIZE, SIZE, SIZE),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )
    report = {"model": path.name, "test_accuracy": float(accuracy), "test_size": len(y_test)}
    (args.out / "voxel-blob32.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
