"""Wire formats of the HTTP backend: Open Inference Protocol v2 (JSON and binary), rows, custom.

A codec turns a batch into a request body and a reply body back into scores. It knows nothing
about sessions, URLs or retries; malformed replies raise :class:`ReplyError`, which the adapter
turns into a one-line :class:`~rex_stream.errors.BackendError` naming the endpoint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rex_stream.errors import ConfigError

BINARY_HEADER = "Inference-Header-Content-Length"

# Open Inference Protocol tensor datatypes and the numpy dtypes they carry (little-endian).
V2_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in {
        "BOOL": "?",
        "UINT8": "<u1",
        "UINT16": "<u2",
        "UINT32": "<u4",
        "UINT64": "<u8",
        "INT8": "<i1",
        "INT16": "<i2",
        "INT32": "<i4",
        "INT64": "<i8",
        "FP16": "<f2",
        "FP32": "<f4",
        "FP64": "<f8",
    }.items()
}


class ReplyError(Exception):
    """A reply that does not have the shape the protocol promises (message is one line)."""


@dataclass(frozen=True)
class EncodedRequest:
    """A request body and the headers that describe it."""

    body: bytes
    headers: Mapping[str, str]


class Codec(Protocol):
    """Encodes batches into request bodies and decodes reply bodies into raw score arrays."""

    def encode(self, batch: np.ndarray) -> EncodedRequest:
        """Build the request body for one batch."""
        ...

    def decode(self, body: bytes, headers: Mapping[str, str], batch_size: int) -> np.ndarray:
        """Extract the scores from a reply (shape is checked by the adapter)."""
        ...


def _dumps(document: Any) -> bytes:
    # allow_nan=False: a NaN in a request means a bug upstream, not something to send.
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def parse_json(body: bytes) -> Any:
    """Parse a reply body as JSON, or raise ReplyError quoting its first bytes."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        start = body[:60].decode("utf-8", "replace").replace("\n", " ")
        raise ReplyError(f"reply is not valid JSON ({exc.msg}); it starts with {start!r}") from exc


def as_score_array(values: Any, what: str) -> np.ndarray:
    """Turn a JSON value (nested lists of numbers) into a float array, or raise ReplyError."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ReplyError(f"{what} is not a rectangular array of numbers") from exc
    return array


@dataclass(frozen=True)
class V2Tensor:
    """One input or output of a v2 model, as its metadata describes it."""

    name: str
    datatype: str
    shape: tuple[int, ...]


def v2_tensor(entry: Any, where: str) -> V2Tensor:
    """Read one entry of a v2 metadata ``inputs``/``outputs`` list."""
    try:
        return V2Tensor(
            str(entry["name"]), str(entry["datatype"]), tuple(int(d) for d in entry["shape"])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ReplyError(f"model metadata has a malformed {where} entry: {entry!r:.120}") from exc


class V2Codec:
    """Open Inference Protocol v2: JSON tensors, or the binary tensor data extension."""

    def __init__(
        self,
        input_tensor: V2Tensor,
        output_name: str,
        *,
        binary: bool,
        batched: bool = True,
    ) -> None:
        if input_tensor.datatype not in V2_DTYPES:
            raise ConfigError(
                f"model input {input_tensor.name!r} has datatype {input_tensor.datatype}; "
                f"the HTTP backend sends only {', '.join(V2_DTYPES)}"
            )
        self.input = input_tensor
        self.output_name = output_name
        self.binary = binary
        self.batched = batched
        self.dtype = V2_DTYPES[input_tensor.datatype]

    def _shape(self, batch: np.ndarray) -> list[int]:
        # An unbatched model (no leading -1 in its metadata) gets one input without a batch axis.
        return list(batch.shape if self.batched else batch.shape[1:])

    def encode(self, batch: np.ndarray) -> EncodedRequest:
        """JSON: data inline; binary: a JSON header followed by the raw little-endian tensor."""
        tensor = np.ascontiguousarray(batch, dtype=self.dtype)
        entry: dict[str, Any] = {
            "name": self.input.name,
            "shape": self._shape(tensor),
            "datatype": self.input.datatype,
        }
        if not self.binary:
            entry["data"] = tensor.ravel().tolist()
            document = {"inputs": [entry], "outputs": [{"name": self.output_name}]}
            return EncodedRequest(_dumps(document), {"Content-Type": "application/json"})
        entry["parameters"] = {"binary_data_size": tensor.nbytes}
        document = {
            "inputs": [entry],
            "outputs": [{"name": self.output_name, "parameters": {"binary_data": True}}],
        }
        header = _dumps(document)
        return EncodedRequest(
            header + tensor.tobytes(),
            {"Content-Type": "application/octet-stream", BINARY_HEADER: str(len(header))},
        )

    def decode(self, body: bytes, headers: Mapping[str, str], batch_size: int) -> np.ndarray:
        """Find the output tensor in a JSON or binary reply and reshape it to its shape."""
        json_length = headers.get(BINARY_HEADER)
        if json_length is None:
            document, binary = parse_json(body), b""
        else:
            try:
                split = int(json_length)
            except ValueError as exc:
                raise ReplyError(f"reply has a non-integer {BINARY_HEADER} header") from exc
            if not 0 < split <= len(body):
                raise ReplyError(f"reply's {BINARY_HEADER} ({split}) exceeds its body")
            document, binary = parse_json(body[:split]), body[split:]
        outputs = document.get("outputs") if isinstance(document, dict) else None
        if not isinstance(outputs, list):
            raise ReplyError("reply has no 'outputs' list")
        offset = 0
        for output in outputs:
            if not isinstance(output, dict):
                raise ReplyError("reply has a malformed 'outputs' entry")
            size = (output.get("parameters") or {}).get("binary_data_size")
            if output.get("name") == self.output_name:
                return self._output_array(output, binary, offset, size)
            offset += int(size or 0)
        names = ", ".join(str(o.get("name")) for o in outputs)
        raise ReplyError(f"reply has no output {self.output_name!r} (it has: {names or 'none'})")

    def _output_array(
        self, output: dict[str, Any], binary: bytes, offset: int, size: Any
    ) -> np.ndarray:
        try:
            shape = tuple(int(d) for d in output["shape"])
            dtype = V2_DTYPES[str(output["datatype"])]
        except (KeyError, TypeError, ValueError) as exc:
            raise ReplyError(f"output {self.output_name!r} lacks a valid shape/datatype") from exc
        if size is not None:
            chunk = binary[offset : offset + int(size)]
            if len(chunk) != int(size) or len(chunk) % dtype.itemsize:
                raise ReplyError(f"output {self.output_name!r} binary data is truncated")
            values = np.frombuffer(chunk, dtype=dtype)
        else:
            values = as_score_array(output.get("data"), f"output {self.output_name!r} data")
            values = values.ravel()
        if values.size != int(np.prod(shape)):
            raise ReplyError(
                f"output {self.output_name!r} holds {values.size} values but declares shape "
                f"{list(shape)}"
            )
        scores = values.reshape(shape)
        if not self.batched:
            scores = scores.reshape(1, -1)
        return scores


class RowsCodec:
    """Row-oriented JSON (TF Serving, TorchServe): ``{"instances": [...]}`` → predictions."""

    def encode(self, batch: np.ndarray) -> EncodedRequest:
        """One nested list per input, under ``instances``."""
        return EncodedRequest(
            _dumps({"instances": batch.tolist()}), {"Content-Type": "application/json"}
        )

    def decode(self, body: bytes, headers: Mapping[str, str], batch_size: int) -> np.ndarray:
        """Accept ``{"predictions": rows}`` (TF Serving) or a bare list of rows (TorchServe)."""
        document = parse_json(body)
        if isinstance(document, dict):
            if "predictions" not in document:
                keys = ", ".join(map(str, document)) or "none"
                raise ReplyError(f"reply has no 'predictions' key (keys: {keys})")
            document = document["predictions"]
        if not isinstance(document, list):
            raise ReplyError("reply's predictions are not a list of rows")
        return as_score_array(document, "predictions")


PLACEHOLDERS = ("{{batch}}", "{{batch_flat}}", "{{batch_shape}}", "{{batch_size}}")


@dataclass(frozen=True)
class CustomTemplate:
    """A declarative wire format: a request body with placeholders, a path to the scores.

    The template file is JSON: ``{"request": {...}, "scores": "result.scores", "flat": false}``.
    In ``request``, a string value that is exactly ``{{batch}}`` becomes the batch as nested
    lists, ``{{batch_flat}}`` a flat list, ``{{batch_shape}}`` its shape, ``{{batch_size}}`` the
    number of inputs. ``scores`` is a dotted path into the reply (list indices are numbers, e.g.
    ``outputs.0.data``); with ``"flat": true`` a flat list is reshaped to one row per input.
    """

    request: Any
    scores_path: tuple[str, ...]
    flat: bool = False

    @classmethod
    def load(cls, path: str) -> CustomTemplate:
        """Read and validate a template file; ConfigError names the file and the problem."""
        try:
            document = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read template={path}: {exc.strerror or exc}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"template={path} is not valid JSON: {exc}") from exc
        if not isinstance(document, dict) or not {"request", "scores"} <= document.keys():
            raise ConfigError(f"template={path} needs the keys 'request' and 'scores'")
        unknown = set(document) - {"request", "scores", "flat"}
        if unknown:
            raise ConfigError(f"template={path} has unknown keys: {', '.join(sorted(unknown))}")
        scores = document["scores"]
        if not isinstance(scores, str) or not scores.strip("$."):
            raise ConfigError(f"template={path}: 'scores' must be a dotted path such as a.b.0")
        if "{{batch" not in json.dumps(document["request"]):
            raise ConfigError(f"template={path}: 'request' has no {{{{batch}}}} placeholder")
        path_parts = tuple(scores.removeprefix("$").strip(".").split("."))
        return cls(document["request"], path_parts, bool(document.get("flat", False)))


class CustomCodec:
    """Fills a :class:`CustomTemplate` with each batch and follows its path to the scores."""

    def __init__(self, template: CustomTemplate) -> None:
        self.template = template

    def _fill(self, node: Any, batch: np.ndarray) -> Any:
        if isinstance(node, dict):
            return {key: self._fill(value, batch) for key, value in node.items()}
        if isinstance(node, list):
            return [self._fill(value, batch) for value in node]
        if node == "{{batch}}":
            return batch.tolist()
        if node == "{{batch_flat}}":
            return batch.ravel().tolist()
        if node == "{{batch_shape}}":
            return list(batch.shape)
        if node == "{{batch_size}}":
            return len(batch)
        return node

    def encode(self, batch: np.ndarray) -> EncodedRequest:
        """The template's request with the placeholders filled in."""
        body = _dumps(self._fill(self.template.request, batch))
        return EncodedRequest(body, {"Content-Type": "application/json"})

    def decode(self, body: bytes, headers: Mapping[str, str], batch_size: int) -> np.ndarray:
        """Follow the scores path; reshape a flat list when the template says so."""
        node = parse_json(body)
        walked: list[str] = []
        for part in self.template.scores_path:
            walked.append(part)
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise ReplyError(f"reply has nothing at {'.'.join(walked)}") from exc
        scores = as_score_array(node, ".".join(walked))
        if self.template.flat:
            if scores.ndim != 1 or scores.size % max(batch_size, 1):
                raise ReplyError(
                    f"{'.'.join(walked)} holds {scores.size} values, not a multiple of the "
                    f"batch size {batch_size}"
                )
            scores = scores.reshape(batch_size, -1)
        return scores
