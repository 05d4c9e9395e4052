"""The v2 binary body is the JSON header then the tensor's little-endian bytes, whatever the
batch's layout and dtype (issue 21: built with one copy of the batch instead of two)."""

from __future__ import annotations

import json

import numpy as np
import pytest

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
