"""Each adapter says which model it serves (ModelInfo.identity), and a store keeps it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import anyio
import numpy as np
import onnxruntime as ort
import pytest
import zarr

from rex_stream import ExplainConfig, StoreError, explain
from rex_stream.engine.backend import BackendSettings, open_backend
from tests.servers.http_apps import serving_http_apps
from tests.servers.triton_server import TritonProcess

SETTINGS = {"iters": 2, "seed": 1, "min_box_size": 8}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _identity(spec: str, **options: str) -> dict[str, object]:
    settings = BackendSettings(input_shape=(3, 32, 32), options=options)
    backend = await open_backend(spec, settings)
    try:
        return dict(backend.info.identity)
    finally:
        await backend.aclose()


def test_onnx_identity_is_the_content_hash(tiny_cnn: Path) -> None:
    identity = anyio.run(_identity, str(tiny_cnn))
    assert identity["sha256"] == hashlib.sha256(tiny_cnn.read_bytes()).hexdigest()


@pytest.mark.anyio
async def test_remote_identities_name_server_model_and_version(
    triton_server: TritonProcess,
) -> None:
    grpc = await _identity(f"triton://{triton_server.grpc_url}/classifier")
    assert grpc["model"] == f"triton://{triton_server.grpc_url}/classifier"
    assert grpc["versions"] and grpc["platform"]
    v2 = await _identity(f"http://{triton_server.http_url}/v2/models/classifier")
    assert v2["url"] == f"http://{triton_server.http_url}/v2/models/classifier"
    assert v2["name"] == "classifier" and v2["versions"]


def test_a_resume_on_another_server_is_refused(
    tiny_cnn: Path, tiny_image: Path, tmp_path: Path
) -> None:
    """The same model behind two row servers: the store names the URL that changed."""
    session = ort.InferenceSession(str(tiny_cnn))

    def score(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {"input": batch.astype(np.float32)})[0]

    store = tmp_path / "s.zarr"
    config = ExplainConfig().with_overrides(**SETTINGS)
    shape = BackendSettings(input_shape=(3, 32, 32))

    def run(spec: str, resume: bool) -> None:
        anyio.run(
            lambda: explain(
                tiny_image, spec, config, store=store, resume=resume, backend_settings=shape
            )
        )

    with serving_http_apps(score) as first, serving_http_apps(score) as second:
        run(first.url("/rows"), resume=False)
        stored = zarr.open_group(str(store), mode="r")["tiny"].attrs["settings"]
        assert stored["model"]["identity"] == {"kind": "http", "url": first.url("/rows")}
        with pytest.raises(StoreError) as refused:
            run(second.url("/rows"), resume=True)
    assert "model.identity.url" in str(refused.value)
