"""Open Inference Protocol v2 (KServe, Triton, MLServer, Seldon): metadata and tensor codec.

Requests carry the batch as a JSON ``data`` list, or, with the binary tensor data extension, as
raw little-endian bytes after a JSON header whose length the ``Inference-Header-Content-Length``
header gives. Replies are read in either form, whatever was asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rex_stream.adapters.http.protocols import (
    EncodedRequest,
    ReplyError,
    as_score_array,
    dumps,
    parse_json,
)
from rex_stream.adapters.http.v2_text import encode_text, encode_tokens
from rex_stream.engine.backend import BackendSettings
from rex_stream.engine.inputs import TEXT_DTYPE, TokenInput, is_token_model, token_dtype
from rex_stream.errors import BackendError, ConfigError

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
        outputs: tuple[V2Tensor, ...] = (),
        tokens: np.dtype | None = None,
    ) -> None:
        self.text = input_tensor.datatype == "BYTES"  # strings: the server tokenises
        #: a token model's structured row (one field per input), else None
        if input_tensor.datatype not in V2_DTYPES and not self.text:
            raise ConfigError(
                f"model input {input_tensor.name!r} has datatype {input_tensor.datatype}; "
                f"the HTTP backend sends only {', '.join(V2_DTYPES)}"
            )
        self.input = input_tensor
        self.output_name = output_name
        self.binary = binary
        self.batched = batched
        self.dtype = TEXT_DTYPE if self.text else V2_DTYPES[input_tensor.datatype]
        self.tokens = tokens
        if tokens is not None:
            self.dtype = tokens
        #: every output the metadata lists (``encode_all``/``decode_all`` ask for all of them)
        self.outputs = outputs

    def _shape(self, batch: np.ndarray) -> list[int]:
        # An unbatched model (no leading -1 in its metadata) gets one input without a batch axis.
        return list(batch.shape if self.batched else batch.shape[1:])

    def encode(self, batch: np.ndarray) -> EncodedRequest:
        """JSON: data inline; binary: a JSON header followed by the raw little-endian tensor."""
        return self._encode(batch, [self.output_name])

    def encode_all(self, batch: np.ndarray) -> EncodedRequest:
        """A request for every output the model has (its metadata's, else what it answers)."""
        return self._encode(batch, [o.name for o in self.outputs])

    def _encode(self, batch: np.ndarray, names: list[str]) -> EncodedRequest:
        if self.tokens is not None:  # input_ids, attention_mask …: one tensor each
            return encode_tokens(batch, names, binary=self.binary, batched=self.batched)
        if self.text:  # rows (N, 1) of str; the tensor is [N] or [N, 1] as the model says
            rank = len(self.input.shape) - (1 if self.batched else 0)
            shape = [len(batch), 1][: rank + 1] if self.batched else [1][:rank]
            return encode_text(self.input.name, batch, shape, names, binary=self.binary)
        batch = np.asarray(batch)
        entry: dict[str, Any] = {
            "name": self.input.name,
            "shape": self._shape(batch),
            "datatype": self.input.datatype,
        }
        document: dict[str, Any] = {"inputs": [entry]}
        if not self.binary:
            entry["data"] = np.ascontiguousarray(batch, dtype=self.dtype).ravel().tolist()
            if names:  # none: the server answers with every output
                document["outputs"] = [{"name": name} for name in names]
            return EncodedRequest(dumps(document), {"Content-Type": "application/json"})
        entry["parameters"] = {"binary_data_size": batch.size * self.dtype.itemsize}
        binary = {"binary_data": True}
        document["outputs"] = [{"name": name, "parameters": binary} for name in names]
        if not names:
            document["parameters"] = {"binary_data_output": True}
        header = dumps(document)
        return EncodedRequest(
            (header, self._tensor_bytes(batch)),
            {"Content-Type": "application/octet-stream", BINARY_HEADER: str(len(header))},
        )

    def _tensor_bytes(self, batch: np.ndarray) -> memoryview:
        """The tensor's little-endian bytes as a flat view, sent after the JSON header without
        being copied into a joined body (issue 21: ``header + tensor.tobytes()`` copied the
        batch twice, a join once); a cast or a gather happens only when the batch is not
        already a contiguous array of the wire's datatype. The batch must not change until
        the call returns (a server answers only after reading the whole body)."""
        tensor = np.ascontiguousarray(batch, dtype=self.dtype)
        return tensor.reshape(-1).view(np.uint8).data

    def decode(self, body: bytes, headers: Mapping[str, str], batch_size: int) -> np.ndarray:
        """Find the output tensor in a JSON or binary reply and reshape it to its shape."""
        outputs, binary = self._reply(body, headers)
        offset = 0
        for output in outputs:
            size = (output.get("parameters") or {}).get("binary_data_size")
            if output.get("name") == self.output_name:
                scores = self._output_array(self.output_name, output, binary, offset, size)
                return scores if self.batched else scores.reshape(1, -1)
            offset += int(size or 0)
        names = ", ".join(str(o.get("name")) for o in outputs)
        raise ReplyError(f"reply has no output {self.output_name!r} (it has: {names or 'none'})")

    def decode_all(self, body: bytes, headers: Mapping[str, str]) -> dict[str, np.ndarray]:
        """Every output tensor of a JSON or binary reply, by name, in its own shape."""
        outputs, binary = self._reply(body, headers)
        found: dict[str, np.ndarray] = {}
        offset = 0
        for output in outputs:
            size = (output.get("parameters") or {}).get("binary_data_size")
            name = str(output.get("name"))
            found[name] = self._output_array(name, output, binary, offset, size)
            offset += int(size or 0)
        return found

    def _reply(self, body: bytes, headers: Mapping[str, str]) -> tuple[list[dict[str, Any]], bytes]:
        """The reply's ``outputs`` entries and its binary part (empty for a JSON reply)."""
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
        if not all(isinstance(output, dict) for output in outputs):
            raise ReplyError("reply has a malformed 'outputs' entry")
        return outputs, binary

    @staticmethod
    def _output_array(
        name: str, output: dict[str, Any], binary: bytes, offset: int, size: Any
    ) -> np.ndarray:
        try:
            shape = tuple(int(d) for d in output["shape"])
            dtype = V2_DTYPES[str(output["datatype"])]
        except (KeyError, TypeError, ValueError) as exc:
            raise ReplyError(f"output {name!r} lacks a valid shape/datatype") from exc
        if size is not None:
            chunk = binary[offset : offset + int(size)]
            if len(chunk) != int(size) or len(chunk) % dtype.itemsize:
                raise ReplyError(f"output {name!r} binary data is truncated")
            values = np.frombuffer(chunk, dtype=dtype)
        else:
            values = as_score_array(output.get("data"), f"output {name!r} data")
            values = values.ravel()
        if values.size != int(np.prod(shape)):
            raise ReplyError(
                f"output {name!r} holds {values.size} values but declares shape {list(shape)}"
            )
        return values.reshape(shape)


def choose_tensor(tensors: list[V2Tensor], wanted: str | None, kind: str, where: str) -> V2Tensor:
    """Pick the named tensor, or the only/first one."""
    if not tensors:
        raise BackendError(f"{where}: model metadata lists no {kind}s")
    if wanted is None:
        if kind == "input" and len(tensors) > 1:
            names = ", ".join(t.name for t in tensors)
            raise ConfigError(f"{where} has several inputs ({names}); choose one with input=NAME")
        return tensors[0]
    for tensor in tensors:
        if tensor.name == wanted:
            return tensor
    names = ", ".join(t.name for t in tensors)
    raise ConfigError(f"{kind}={wanted!r} is not a model {kind} of {where} (it has: {names})")


def v2_token_layout(
    tensors: list[V2Tensor], settings: BackendSettings, where: str
) -> tuple[np.dtype, bool, int | None] | None:
    """(structured row, batched, max batch) when the model takes token ids (``input_ids``,
    ``attention_mask``, ``token_type_ids``: integer ``[N, L]``), else None."""
    integer = [t.datatype in ("INT64", "INT32") for t in tensors]
    if not is_token_model([t.name for t in tensors], integer):
        return None
    ranks = {len(t.shape) for t in tensors}
    if len(ranks) != 1 or ranks - {1, 2}:
        shapes = ", ".join(f"{t.name} {list(t.shape)}" for t in tensors)
        raise BackendError(f"{where}: token inputs must be [N, L] (or [L]); they are {shapes}")
    batched = ranks == {2}
    first = {t.shape[0] for t in tensors} if batched else {1}
    if batched and first - {-1, 1}:
        raise BackendError(f"{where}: token inputs have batch sizes {sorted(first)}")
    limit = None if -1 in first else 1
    wanted = tuple(settings.input_shape) if settings.input_shape is not None else None
    declared = [TokenInput(t.name, V2_DTYPES[t.datatype], t.shape[-1]) for t in tensors]
    return token_dtype(declared, wanted, where), batched, limit


def v2_layout(
    tensor: V2Tensor, settings: BackendSettings, where: str
) -> tuple[tuple[int, ...], bool, int | None]:
    """(per-input shape, whether the model takes a batch axis, max batch implied by the shape)."""
    shape = tuple(tensor.shape)
    wanted = tuple(settings.input_shape) if settings.input_shape is not None else None
    if shape and shape[0] == -1:
        per_input, batched, limit = shape[1:], True, None
    elif wanted is not None and shape == wanted:
        per_input, batched, limit = shape, False, 1
    elif shape and shape[0] == 1:
        per_input, batched, limit = shape[1:], True, 1
    else:
        per_input, batched, limit = shape, False, 1
    if any(d < 0 for d in per_input) or (wanted is not None and per_input != wanted):
        fits = wanted is not None and len(wanted) == len(per_input)
        if not fits or any(
            d >= 0 and d != w for d, w in zip(per_input, wanted or (), strict=False)
        ):
            raise ConfigError(
                f"{where} takes inputs of shape {list(per_input)}; give a matching concrete "
                f"shape with --input-shape (got {list(wanted) if wanted else 'none'})"
            )
        per_input = wanted or per_input
    return per_input, batched, limit
