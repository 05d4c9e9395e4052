"""Detectors behind real servers: a Triton Inference Server (PyTriton) serving the planted
EfficientNMS-layout detector, reached over gRPC (``triton://``) and over its Open Inference
Protocol v2 HTTP endpoint (``http://…/v2/models/…``); the explanations equal the local ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest

from rex_stream.config import ExplainConfig
from rex_stream.runs.detect import DetectionResult, DetectionSettings, explain_detections
from tests.detection.planted import planted_photo, save_detector
from tests.servers.triton_server import TRITON_PYTHON_ENV, TritonProcess, triton_python

OBJECTS = [(2, 3, 0), (5, 6, 2)]
CONFIG = ExplainConfig().with_overrides(iters=5, seed=7, min_box_size=2)
SETTINGS = DetectionSettings("efficient-nms", all_detections=True)


@pytest.fixture(scope="module")
def detector_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    if triton_python() is None:
        pytest.skip(f"needs a PyTriton environment: set {TRITON_PYTHON_ENV} to its python")
    folder = tmp_path_factory.mktemp("detector")
    # the server declares every output FP32 (count and classes included), as many do
    model = save_detector(folder / "detector.onnx", "efficient-nms", float_outputs=True)
    server = TritonProcess(model_path=model, model_name="detector", max_batch_size=8)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _explain(photo: Path, backend: str) -> DetectionResult:
    async def main() -> DetectionResult:
        return await explain_detections(str(photo), backend, CONFIG, SETTINGS)

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
