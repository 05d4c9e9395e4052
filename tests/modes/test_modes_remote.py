"""A non-image mode through a model server: the spectral model served by a real Triton gives
the same map over gRPC and HTTP as through the local ONNX file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from rex_stream import explain_sync
from tests.servers.triton_server import TritonProcess

MODELS = Path(__file__).resolve().parents[2] / "rex_stream" / "data" / "models"
SETTINGS = {"iters": 4, "seed": 5, "search_limit": 120, "chunk_size": 4}


def test_spectral_mode_through_triton_equals_local(
    triton_process_factory: Callable[..., TritonProcess],
) -> None:
    model = MODELS / "spectral-markers.onnx"
    signal = MODELS / "spectral-markers-A.npy"
    local = explain_sync(signal, str(model), **SETTINGS)
    server = triton_process_factory(model_path=model, access_token=None, max_batch_size=8)
    server.start()
    for spec in (
        f"triton://{server.grpc_url}/classifier",
        f"triton+http://{server.http_url}/classifier",
    ):
        remote = explain_sync(signal, spec, **SETTINGS)
        assert remote.subject.mode == "spectral"
        assert remote.target.classification == local.target.classification
        np.testing.assert_array_equal(remote.responsibility, local.responsibility)
