"""Text as Open Inference Protocol v2 tensors: strings as BYTES (a JSON list of strings, or with
the binary tensor data extension each element as a 4-byte little-endian length and its bytes),
or token ids as one INT64/INT32 tensor per field of a structured batch (``input_ids``,
``attention_mask``, ``token_type_ids``), as JSON lists or raw little-endian bytes."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from rex_stream.adapters.http.protocols import EncodedRequest, dumps
from rex_stream.engine.inputs import named_inputs, text_rows

BINARY_HEADER = "Inference-Header-Content-Length"

#: The v2 datatypes of token-id tensors.
TOKEN_DATATYPES = {np.dtype("<i8"): "INT64", np.dtype("<i4"): "INT32"}


def serialize_bytes(texts: list[str]) -> bytes:
    """The binary extension's BYTES layout: each element's length (uint32 LE), then its bytes."""
    parts = []
    for text in texts:
        data = text.encode("utf-8")
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def encode_text(
    name: str, batch: np.ndarray, shape: list[int], outputs: list[str], *, binary: bool
) -> EncodedRequest:
    """A v2 request carrying the string batch as the BYTES input ``name`` of ``shape``."""
    texts = text_rows(batch)
    entry: dict[str, Any] = {"name": name, "shape": shape, "datatype": "BYTES"}
    document: dict[str, Any] = {"inputs": [entry]}
    if not binary:
        entry["data"] = texts
        if outputs:
            document["outputs"] = [{"name": output} for output in outputs]
        return EncodedRequest(dumps(document), {"Content-Type": "application/json"})
    data = serialize_bytes(texts)
    entry["parameters"] = {"binary_data_size": len(data)}
    flag = {"binary_data": True}
    document["outputs"] = [{"name": output, "parameters": flag} for output in outputs]
    if not outputs:
        document["parameters"] = {"binary_data_output": True}
    header = dumps(document)
    return EncodedRequest(
        header + data,
        {"Content-Type": "application/octet-stream", BINARY_HEADER: str(len(header))},
    )


def encode_tokens(
    batch: np.ndarray, outputs: list[str], *, binary: bool, batched: bool
) -> EncodedRequest:
    """A v2 request carrying a structured token batch as one tensor per field."""
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, array in named_inputs(batch).items():
        tensor = np.ascontiguousarray(
            array if batched else array[0], dtype=array.dtype.newbyteorder("<")
        )
        entry: dict[str, Any] = {
            "name": name,
            "shape": list(tensor.shape),
            "datatype": TOKEN_DATATYPES[tensor.dtype],
        }
        if binary:
            entry["parameters"] = {"binary_data_size": tensor.nbytes}
            chunks.append(tensor.tobytes())
        else:
            entry["data"] = tensor.ravel().tolist()
        entries.append(entry)
    document: dict[str, Any] = {"inputs": entries}
    if not binary:
        if outputs:
            document["outputs"] = [{"name": output} for output in outputs]
        return EncodedRequest(dumps(document), {"Content-Type": "application/json"})
    flag = {"binary_data": True}
    document["outputs"] = [{"name": output, "parameters": flag} for output in outputs]
    if not outputs:
        document["parameters"] = {"binary_data_output": True}
    header = dumps(document)
    return EncodedRequest(
        header + b"".join(chunks),
        {"Content-Type": "application/octet-stream", BINARY_HEADER: str(len(header))},
    )
