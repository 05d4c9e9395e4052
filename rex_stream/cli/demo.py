"""The bundled demo: a real ImageNet classifier and a photo, explained through local onnxruntime."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rex_stream.config import ExplainConfig

DATA = Path(__file__).resolve().parents[1] / "data"
DEMO_MODEL = DATA / "efficientnet-lite0.onnx"
DEMO_IMAGE = DATA / "ladybird.jpg"
IMAGENET_MEANS = (0.485, 0.456, 0.406)
IMAGENET_STDS = (0.229, 0.224, 0.225)


def demo_config() -> ExplainConfig:
    """Settings for the bundled model: ImageNet normalisation, a fixed seed."""
    config = ExplainConfig()
    return replace(
        config,
        image=replace(config.image, means=IMAGENET_MEANS, stds=IMAGENET_STDS),
        search=replace(config.search, seed=0),
    )
