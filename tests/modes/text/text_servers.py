"""Servers for the text tests: an aiohttp app speaking the Open Inference Protocol v2 (BYTES
in JSON and in the binary extension, and a model over INT64 token ids) and KServe v1
(``instances`` of strings), and a real Triton (PyTriton) serving a BYTES model that tokenises
itself (``lexicon``) and one over token ids (``lexicon-ids``).

Both score with :func:`tests.modes.text.lexicon.score_texts` and keep every text they were
sent, for the tests to look at.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BINARY_HEADER = "Inference-Header-Content-Length"


def parse_bytes(data: bytes) -> list[str]:
    """The binary extension's BYTES elements: a uint32 LE length, then the bytes, repeated."""
    texts, offset = [], 0
    while offset < len(data):
        (size,) = struct.unpack_from("<I", data, offset)
        texts.append(data[offset + 4 : offset + 4 + size].decode("utf-8"))
        offset += 4 + size
    return texts


@dataclass
class TextApp:
    """A running app: its base URL and the texts it was sent (by route kind)."""

    base_url: str = ""
    texts: dict[str, list[str]] = field(default_factory=dict)
    batches: list[int] = field(default_factory=list)
    #: the token-id batches (name → (N, L) array) it was sent, by route kind
    tokens: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@contextmanager
def serving_text_app() -> Iterator[TextApp]:
    """``/v2/models/lexicon`` (metadata, ``/infer``) and ``/v1/models/lexicon:predict`` on
    127.0.0.1, from a thread, until the block ends."""
    import numpy as np
    from aiohttp import web

    from tests.modes.text.lexicon import score_ids, score_texts
    from tests.servers.app_thread import serving_app

    app_state = TextApp()

    async def metadata(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "name": "lexicon",
                "versions": ["1"],
                "platform": "test",
                "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}],
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 2]}],
            }
        )

    async def infer(request: web.Request) -> web.Response:
        body = await request.read()
        split = request.headers.get(BINARY_HEADER)
        document = json.loads(body[: int(split)] if split else body)
        entry = document["inputs"][0]
        assert entry["datatype"] == "BYTES" and entry["shape"][1:] == [1], entry
        texts = parse_bytes(body[int(split) :]) if split else list(entry["data"])
        assert len(texts) == entry["shape"][0]
        app_state.texts.setdefault("v2-binary" if split else "v2-json", []).extend(texts)
        app_state.batches.append(len(texts))
        scores = score_texts(texts)
        output = {"name": "logits", "datatype": "FP32", "shape": list(scores.shape)}
        return web.json_response({"outputs": [{**output, "data": scores.ravel().tolist()}]})

    async def ids_metadata(request: web.Request) -> web.Response:
        names = ("input_ids", "attention_mask", "token_type_ids")
        return web.json_response(
            {
                "name": "lexicon-ids",
                "versions": ["1"],
                "platform": "test",
                "inputs": [{"name": n, "datatype": "INT64", "shape": [-1, -1]} for n in names],
                "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 2]}],
            }
        )

    async def ids_infer(request: web.Request) -> web.Response:
        body = await request.read()
        split = request.headers.get(BINARY_HEADER)
        document = json.loads(body[: int(split)] if split else body)
        arrays, offset = {}, int(split or 0)
        for entry in document["inputs"]:
            assert entry["datatype"] == "INT64", entry
            size = (entry.get("parameters") or {}).get("binary_data_size")
            if split:
                values = np.frombuffer(body[offset : offset + size], "<i8")
                offset += size
            else:
                values = np.asarray(entry["data"], np.int64)
            arrays[entry["name"]] = values.reshape(entry["shape"])
        app_state.tokens.setdefault("v2-binary" if split else "v2-json", []).append(arrays)
        scores = score_ids(arrays["input_ids"], arrays["attention_mask"])
        output = {"name": "logits", "datatype": "FP32", "shape": list(scores.shape)}
        return web.json_response({"outputs": [{**output, "data": scores.ravel().tolist()}]})

    async def server_metadata(request: web.Request) -> web.Response:
        return web.json_response({"name": "test", "extensions": ["binary_tensor_data"]})

    async def predict(request: web.Request) -> web.Response:
        document = await request.json()
        texts = document["instances"]
        assert all(isinstance(t, str) for t in texts), texts
        app_state.texts.setdefault("v1", []).extend(texts)
        return web.json_response({"predictions": score_texts(texts).tolist()})

    def make_app() -> web.Application:
        app = web.Application()
        app.router.add_get("/v2", server_metadata)
        app.router.add_get("/v2/models/lexicon", metadata)
        app.router.add_post("/v2/models/lexicon/infer", infer)
        app.router.add_post("/v1/models/lexicon:predict", predict)
        app.router.add_get("/v2/models/lexicon-ids", ids_metadata)
        app.router.add_post("/v2/models/lexicon-ids/infer", ids_infer)
        return app

    with serving_app(make_app, "text-app") as base_url:
        app_state.base_url = base_url
        yield app_state


# ------------------------------------------------------------------ the Triton (PyTriton) side


def triton_command(python: str, http_port: int, grpc_port: int, metrics_port: int) -> list[str]:
    """The command that serves the lexicon as model ``lexicon`` with a BYTES input."""
    return [
        python, str(Path(__file__)), "--http-port", str(http_port), "--grpc-port",
        str(grpc_port), "--metrics-port", str(metrics_port),
    ]  # fmt: skip


def _serve(args: argparse.Namespace) -> None:  # pragma: no cover - runs in the PyTriton venv
    import signal

    import numpy as np
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    sys.path.insert(0, str(HERE))
    from lexicon import score_ids, score_texts  # no rex-stream here: import by path

    @batch
    def infer(text: np.ndarray) -> dict[str, np.ndarray]:
        texts = [bytes(t).decode("utf-8") for t in text.reshape(-1)]
        return {"logits": score_texts(texts)}

    @batch
    def infer_ids(
        input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray
    ) -> dict[str, np.ndarray]:
        assert input_ids.dtype == np.int64 and not token_type_ids.any()
        return {"logits": score_ids(input_ids, attention_mask)}

    config = TritonConfig(
        http_address="127.0.0.1", http_port=args.http_port, grpc_address="127.0.0.1",
        grpc_port=args.grpc_port, metrics_port=args.metrics_port, allow_metrics=False,
        exit_timeout_secs=2,
    )  # fmt: skip
    with Triton(config=config) as triton:
        triton.bind(
            model_name="lexicon", infer_func=infer,
            inputs=[Tensor(name="text", dtype=bytes, shape=(1,))],
            outputs=[Tensor(name="logits", dtype=np.float32, shape=(2,))],
            config=ModelConfig(max_batch_size=16, batcher=DynamicBatcher()), strict=True,
        )  # fmt: skip
        ids = ("input_ids", "attention_mask", "token_type_ids")
        triton.bind(
            model_name="lexicon-ids", infer_func=infer_ids,
            inputs=[Tensor(name=name, dtype=np.int64, shape=(-1,)) for name in ids],
            outputs=[Tensor(name="logits", dtype=np.float32, shape=(2,))],
            config=ModelConfig(max_batch_size=16, batcher=DynamicBatcher()), strict=True,
        )  # fmt: skip

        def interrupt(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)
        triton.serve()


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser()
    for port in ("--http-port", "--grpc-port", "--metrics-port"):
        parser.add_argument(port, type=int, required=True)
    _serve(parser.parse_args())
