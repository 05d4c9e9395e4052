"""A multi-output model (TensorRT EfficientNMS's four outputs) behind a real Open Inference
Protocol v2 server on 127.0.0.1 that answers 413 for batches over a limit: the named outputs of
a batch are split, the limit halved and kept, and the parts joined as one answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import onnxruntime as ort
import pytest
from aiohttp import web

from rex_stream.adapters.http.backend import join_outputs
from rex_stream.engine.backend import BackendSettings, open_backend
from rex_stream.errors import BackendError
from tests.detection.planted import planted_tensor, save_detector
from tests.servers.app_thread import serving_app

LIMIT = 3


class V2Server:
    """The planted EfficientNMS detector over v2 JSON; 413 for batches over ``LIMIT``."""

    def __init__(self, model: Path) -> None:
        self.session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        self.batches: list[int] = []
        self.url = ""

    def metadata(self) -> dict[str, object]:
        def tensor(t: ort.NodeArg) -> dict[str, object]:
            datatype = {"tensor(float)": "FP32", "tensor(int32)": "INT32"}[t.type]
            shape = [d if isinstance(d, int) else -1 for d in t.shape]
            return {"name": t.name, "datatype": datatype, "shape": shape}

        return {
            "name": "detector",
            "inputs": [tensor(t) for t in self.session.get_inputs()],
            "outputs": [tensor(t) for t in self.session.get_outputs()],
        }

    async def infer(self, request: web.Request) -> web.Response:
        document = json.loads(await request.read())
        (given,) = document["inputs"]
        batch = np.asarray(given["data"], np.float32).reshape(given["shape"])
        self.batches.append(len(batch))
        if len(batch) > LIMIT:
            return web.Response(status=413, text="Payload Too Large")
        results = self.session.run(None, {"images": batch})
        outputs = [
            {
                "name": o.name,
                "datatype": "FP32" if r.dtype == np.float32 else "INT32",
                "shape": list(r.shape),
                "data": r.reshape(-1).tolist(),
            }
            for o, r in zip(self.session.get_outputs(), results)
        ]
        return web.json_response({"model_name": "detector", "outputs": outputs})

    def app(self) -> web.Application:
        async def metadata(_request: web.Request) -> web.Response:
            return web.json_response(self.metadata())

        app = web.Application(client_max_size=64 * 1024**2)
        app.add_routes(
            [
                web.get("/v2/models/detector", metadata),
                web.post("/v2/models/detector/infer", self.infer),
            ]
        )
        return app


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[V2Server]:
    model = save_detector(tmp_path_factory.mktemp("v2") / "nms.onnx", "efficient-nms")
    served = V2Server(model)
    with serving_app(served.app, "v2-detector") as base_url:
        served.url = f"{base_url}/v2/models/detector"
        yield served


def test_413_halves_the_batch_of_a_multi_output_model(server: V2Server) -> None:
    batch = np.stack([planted_tensor([(i % 8, (3 * i) % 8, i % 3)], seed=i) for i in range(10)])
    expected = server.session.run(None, {"images": batch})
    names = [o.name for o in server.session.get_outputs()]
    settings = BackendSettings(options={"protocol": "v2-json"}, all_outputs=True)

    async def main() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int | None]:
        backend = await open_backend(server.url, settings)
        try:
            first = await backend.infer_outputs(batch)  # type: ignore[attr-defined]
            again = await backend.infer_outputs(batch[:4])  # type: ignore[attr-defined]
            return first, again, backend.info.max_batch
        finally:
            await backend.aclose()

    before = len(server.batches)
    first, again, limit = anyio.run(main)
    assert server.batches[before:] == [10, 5, 2, 2, 2, 2, 2, 2, 2]  # 10 → 5 → 2, then kept
    assert limit == 2
    assert list(first) == names
    for name, array in zip(names, expected):
        np.testing.assert_array_equal(first[name], array)
        np.testing.assert_array_equal(again[name], array[:4])


def test_outputs_without_a_batch_axis_do_not_join() -> None:
    parts = [{"boxes": np.zeros((2, 4))}, {"boxes": np.zeros((3, 4))}]
    assert join_outputs(parts, "here")["boxes"].shape == (5, 4)
    with pytest.raises(BackendError, match="max_batch=1"):
        join_outputs([{"scores": np.zeros(())}, {"scores": np.zeros(())}], "here")
    with pytest.raises(BackendError, match="do not join"):
        join_outputs([{"b": np.zeros((1, 2, 4))}, {"b": np.zeros((1, 3, 4))}], "here")
