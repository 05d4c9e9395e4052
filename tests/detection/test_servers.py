"""Detectors behind real servers: a Triton Inference Server (PyTriton) serving the planted
EfficientNMS-layout detector, reached over gRPC (``triton://``) and over its Open Inference
Protocol v2 HTTP endpoint (``http://…/v2/models/…``); the explanations equal the local ones."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest

from rex_stream.adapters.triton.shm import SHM_ROOT, owner_pid
from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import BackendSettings, open_backend
from rex_stream.runs.detect import DetectionResult, DetectionSettings, explain_detections
from tests.detection.planted import planted_photo, planted_tensor, save_detector
from tests.plugins.triton_fixtures import TRITON_TOKEN
from tests.servers.triton_server import TRITON_PYTHON_ENV, TritonProcess, triton_python

OBJECTS = [(2, 3, 0), (5, 6, 2)]
TOKEN_VAR = "REX_STREAM_TEST_TRITON_TOKEN"
SHARED = {"shared_memory": "system", "token_env": TOKEN_VAR, "auth": "triton"}
CONFIG = ExplainConfig().with_overrides(iters=5, seed=7, min_box_size=2)
SETTINGS = DetectionSettings("efficient-nms", all_detections=True)


@pytest.fixture(scope="module")
def detector_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    if triton_python() is None:
        pytest.skip(f"needs a PyTriton environment: set {TRITON_PYTHON_ENV} to its python")
    folder = tmp_path_factory.mktemp("detector")
    # the server declares every output FP32 (count and classes included), as many do
    model = save_detector(folder / "detector.onnx", "efficient-nms", float_outputs=True)
    server = TritonProcess(
        model_path=model, model_name="detector", max_batch_size=8, access_token=TRITON_TOKEN
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(TOKEN_VAR, TRITON_TOKEN)  # shared memory is guarded by Triton's token
        try:
            server.start()
            yield server
        finally:
            server.stop()


def _explain(
    photo: Path, backend: str, backend_settings: BackendSettings | None = None
) -> DetectionResult:
    async def main() -> DetectionResult:
        return await explain_detections(
            str(photo), backend, CONFIG, SETTINGS, backend_settings=backend_settings
        )

    return anyio.run(main)


@pytest.mark.parametrize("protocol", ["grpc", "http-v2"])
def test_a_served_detector_explains_as_the_local_one(
    detector_server: TritonProcess, tmp_path: Path, protocol: str
) -> None:
    photo = planted_photo(tmp_path / "scene.png", OBJECTS)
    local = _explain(photo, str(save_detector(tmp_path / "local.onnx", "efficient-nms")))
    spec = (
        f"triton://{detector_server.grpc_url}/detector"
        if protocol == "grpc"
        else f"http://{detector_server.http_url}/v2/models/detector"
    )
    served = _explain(photo, spec)
    assert [e.detection.box for e in served.explained] == [e.detection.box for e in local.explained]
    assert len(served.explained) == 2
    for ours, theirs in zip(served.explained, local.explained):
        np.testing.assert_array_equal(
            ours.explanation.responsibility, theirs.explanation.responsibility
        )
        np.testing.assert_array_equal(ours.explanation.mask, theirs.explanation.mask)
    stats = served.explained[0].explanation.stats
    assert stats.mean_batch > 1  # mutants of both targets travel in shared batches


def _local_outputs(folder: Path, batch: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    model = save_detector(folder / "reference.onnx", "efficient-nms", float_outputs=True)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return {o.name: r for o, r in zip(session.get_outputs(), session.run(None, {"images": batch}))}


def _batch(count: int) -> np.ndarray:
    return np.stack([planted_tensor([(i % 8, (5 * i) % 8, i % 3)], seed=i) for i in range(count)])


@pytest.mark.parametrize("scheme", ["triton", "triton+http"])
def test_shared_memory_carries_every_output(
    detector_server: TritonProcess, tmp_path: Path, scheme: str
) -> None:
    """EfficientNMS's four outputs, each through its own registered region."""
    address = detector_server.grpc_url if scheme == "triton" else detector_server.http_url
    spec = f"{scheme}://{address}/detector"
    settings = BackendSettings(all_outputs=True, options=SHARED)
    batch = _batch(6)

    async def main() -> tuple[dict[str, np.ndarray], list[str]]:
        backend = await open_backend(spec, settings)
        try:
            assert backend.uses_shared_memory  # type: ignore[attr-defined]
            regions = sorted(p.name for p in SHM_ROOT.iterdir() if owner_pid(p.name) == os.getpid())
            return await backend.infer_outputs(batch), regions  # type: ignore[attr-defined]
        finally:
            await backend.aclose()

    found, regions = anyio.run(main)
    assert {r.rsplit("-", 1)[1] for r in regions} == {"in", "out", "out1", "out2", "out3"}
    expected = _local_outputs(tmp_path, batch)
    assert list(found) == list(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(found[name], array, err_msg=name)
    assert not [p for p in SHM_ROOT.iterdir() if owner_pid(p.name) == os.getpid()]
    # a whole explanation through shared memory equals the local one
    photo = planted_photo(tmp_path / "scene.png", OBJECTS)
    local = _explain(photo, str(save_detector(tmp_path / "local.onnx", "efficient-nms")))
    served = _explain(photo, spec, BackendSettings(options=SHARED))
    for ours, theirs in zip(served.explained, local.explained, strict=True):
        np.testing.assert_array_equal(
            ours.explanation.responsibility, theirs.explanation.responsibility
        )


def test_a_batch_over_the_servers_limit_is_halved_for_every_output(
    detector_server: TritonProcess, tmp_path: Path
) -> None:
    """The client is told 16 at a time (max_batch=16); Triton refuses more than its 8 ("batch
    size must be <= 8"): the batch is halved and every output joined as one answer."""
    spec = f"http://{detector_server.http_url}/v2/models/detector"
    settings = BackendSettings(all_outputs=True, options={"max_batch": "16"})
    batch = _batch(12)

    async def main() -> tuple[dict[str, np.ndarray], int | None]:
        backend = await open_backend(spec, settings)
        try:
            return await backend.infer_outputs(batch), backend.info.max_batch  # type: ignore[attr-defined]
        finally:
            await backend.aclose()

    found, limit = anyio.run(main)
    assert limit == 6  # 12 refused, halved to 6, which fits and sticks
    expected = _local_outputs(tmp_path, batch)
    for name, array in expected.items():
        np.testing.assert_array_equal(found[name], array, err_msg=name)


def test_more_calls_than_shared_memory_slots_over_http(
    detector_server: TritonProcess, tmp_path: Path
) -> None:
    """Two slots, a window of four: calls without a free slot travel in the request (binary
    outputs) between calls through shared memory (JSON only); neither may carry the other's
    headers (tritonclient writes the binary header length into the headers it is given)."""
    spec = f"triton+http://{detector_server.http_url}/detector"
    settings = BackendSettings(all_outputs=True, max_inflight=2, options=SHARED)
    batches = [_batch(8)[i : i + 1 + i % 3] for i in range(8)]

    async def main() -> list[dict[str, np.ndarray]]:
        backend = await open_backend(spec, settings)
        found: list[dict[str, np.ndarray]] = [{} for _ in batches]

        async def one(index: int) -> None:
            found[index] = await backend.infer_outputs(batches[index])  # type: ignore[attr-defined]

        try:
            backend.follow_inflight(4)  # type: ignore[attr-defined]
            async with anyio.create_task_group() as group:
                for index in range(len(batches)):
                    group.start_soon(one, index)
        finally:
            await backend.aclose()
        return found

    for batch, found in zip(batches, anyio.run(main), strict=True):
        expected = _local_outputs(tmp_path, batch)
        for name, array in expected.items():
            np.testing.assert_array_equal(found[name], array, err_msg=name)
