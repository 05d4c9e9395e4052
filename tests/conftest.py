"""Shared fixtures: small real ONNX models built with onnx.helper, sample inputs, paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.onnx_models import save_patch_model, save_tiny_cnn

pytest_plugins = ["tests.plugins.triton_fixtures"]

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IMAGENET_MODEL = SHARED / "models" / "efficientnet-lite0.onnx"
IMAGES = SHARED / "images"


@pytest.fixture(scope="session")
def tiny_cnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN (N, 3, 32, 32) → 10 logits with fixed random weights."""
    return save_tiny_cnn(tmp_path_factory.mktemp("models") / "tiny_cnn.onnx")


@pytest.fixture(scope="session")
def patch_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A greyscale (N, 1, 24, 24) model that says class 1 only when a planted patch is visible."""
    return save_patch_model(tmp_path_factory.mktemp("models") / "patch.onnx")


@pytest.fixture(scope="session")
def tiny_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32 × 32 RGB picture with structure (a gradient and a bright square)."""
    from PIL import Image

    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 60, size=(32, 32, 3), dtype=np.uint8)
    pixels[8:20, 12:26] = (230, 40, 40)
    path = tmp_path_factory.mktemp("images") / "tiny.png"
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="session")
def imagenet_model() -> Path:
    """The shared ImageNet classifier (skips when ../shared is missing)."""
    if not IMAGENET_MODEL.exists():
        pytest.skip(f"{IMAGENET_MODEL} not found")
    return IMAGENET_MODEL
