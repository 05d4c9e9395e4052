"""The ONNX adapter on real model files."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import onnxruntime as ort
import pytest

from rex_stream import BackendSettings, ConfigError, open_backend


def test_metadata_and_scores_match_onnxruntime(imagenet_model: Path) -> None:
    async def main() -> None:
        backend = await open_backend(str(imagenet_model), BackendSettings(options={"threads": "1"}))
        try:
            info = backend.info
            assert info.input_name == "input" and info.input_shape == (3, 224, 224)
            assert info.num_classes == 1000 and info.max_batch is None
            batch = np.random.default_rng(0).normal(size=(3, 3, 224, 224)).astype(np.float32)
            scores = await backend.infer(batch)
            direct = ort.InferenceSession(str(imagenet_model)).run(None, {"input": batch})[0]
            assert scores.shape == (3, 1000)
            np.testing.assert_allclose(scores, direct, rtol=1e-4, atol=1e-4)
        finally:
            await backend.aclose()

    anyio.run(main)


def test_unknown_output_and_missing_file(tiny_cnn: Path) -> None:
    async def main() -> None:
        with pytest.raises(ConfigError, match="no output"):
            await open_backend(str(tiny_cnn), BackendSettings(options={"output": "nope"}))
        with pytest.raises(ConfigError, match="no such model file"):
            await open_backend("missing.onnx")
        with pytest.raises(ConfigError, match="cannot tell which backend"):
            await open_backend("not-a-spec")
        with pytest.raises(ConfigError, match="unknown ONNX backend option"):
            await open_backend(str(tiny_cnn), BackendSettings(options={"thread": "1"}))
        with pytest.raises(ConfigError, match="positive integer"):
            await open_backend(str(tiny_cnn), BackendSettings(options={"threads": "x"}))
        with pytest.raises(ConfigError, match="no backend adapter for 'grpc'"):
            await open_backend("grpc://host:1/model")

    anyio.run(main)
