"""The v2 binary body is the JSON header then the tensor's little-endian bytes, whatever the
batch's layout and dtype (issue 21: a ready batch is sent from its own memory, not copied into
a joined body), and it reaches a real server whole."""

from __future__ import annotations

import json

import numpy as np
import pytest
from aiohttp import web
from yarl import URL

from rex_stream.adapters.http.options import HttpOptions
from rex_stream.adapters.http.transport import HttpTransport
from rex_stream.adapters.http.v2 import BINARY_HEADER, V2_DTYPES, V2Codec, V2Tensor

RNG = np.random.default_rng(3)
BATCHES = {
    "float64": RNG.random((4, 3)) * 300 - 100,
    "empty": np.zeros((0, 3)),
    "transposed": (RNG.random((3, 4)) * 300).T,
    "big-endian": (RNG.random((4, 3)) * 300).astype(">f4"),
    "float32": (RNG.random((4, 3)) * 300).astype(np.float32),
}


@pytest.mark.parametrize("datatype", ["FP32", "FP16", "FP64", "BOOL", "INT64", "UINT8"])
@pytest.mark.parametrize("name", list(BATCHES))
def test_binary_body_is_header_then_the_cast_tensor(datatype: str, name: str) -> None:
    batch = BATCHES[name]
    codec = V2Codec(V2Tensor("x", datatype, (-1, 3)), "y", binary=True)
    request = codec.encode(batch)
    split = int(request.headers[BINARY_HEADER])
    header = json.loads(request.body[:split])
    expected = batch.astype(V2_DTYPES[datatype])
    assert header["inputs"][0]["shape"] == list(batch.shape)
    assert header["inputs"][0]["parameters"]["binary_data_size"] == expected.nbytes
    assert request.body[split:] == expected.tobytes()
    assert np.array_equal(
        np.frombuffer(request.body[split:], V2_DTYPES[datatype]).reshape(batch.shape), expected
    )


def test_a_ready_batch_goes_out_as_a_view_not_a_copy() -> None:
    """A contiguous batch already in the wire's datatype is sent from its own memory."""
    batch = np.random.default_rng(5).random((8, 3, 16, 16), dtype=np.float32)
    request = V2Codec(V2Tensor("x", "FP32", (-1, 3, 16, 16)), "y", binary=True).encode(batch)
    header, tensor = request.parts
    assert isinstance(tensor, memoryview) and len(tensor) == batch.nbytes
    assert np.shares_memory(np.frombuffer(tensor, np.uint8), batch)
    assert len(header) == int(request.headers[BINARY_HEADER])


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp runs on asyncio only."""
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize("route", ["/echo", "/hop"])
@pytest.mark.parametrize("rows", [1, 40])  # under and over the size sent apart from the headers
async def test_a_body_in_parts_arrives_whole(route: str, rows: int) -> None:
    """A real server receives the JSON header and the tensor view as one body of the announced
    length, also when a 307 makes the client send it again."""
    received: list[bytes] = []

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        assert request.content_length == len(body)
        received.append(body)
        return web.json_response({"length": len(body)})

    async def hop(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=307, headers={"Location": "/echo"})

    app = web.Application(client_max_size=1 << 26)
    app.router.add_post("/echo", echo)
    app.router.add_post("/hop", hop)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = URL(f"http://127.0.0.1:{runner.addresses[0][1]}{route}")
    batch = np.random.default_rng(rows).random((rows, 3, 32, 32), dtype=np.float32)
    request = V2Codec(V2Tensor("x", "FP32", (-1, 3, 32, 32)), "y", binary=True).encode(batch)
    transport = HttpTransport(url, HttpOptions.parse(url, {}), timeout_s=20.0, max_inflight=2)
    try:
        status, _, reply = await transport.request("POST", url, request.content, request.headers)
    finally:
        await transport.aclose()
        await runner.cleanup()
    assert status == 200 and json.loads(reply) == {"length": len(request.body)}
    assert received == [request.body]
    split = int(request.headers[BINARY_HEADER])
    assert np.array_equal(
        np.frombuffer(received[0][split:], np.float32).reshape(batch.shape), batch
    )
