"""What the Triton backend learns of its model when it connects: health and readiness, then
metadata and config turned into a :class:`ModelInfo` (dims, datatypes, the batch axis, the
input layout and which output holds the scores).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.utils import triton_to_np_dtype

from rex_stream.adapters.triton.client import MAX_DECLARED_CLASSES, TritonClient
from rex_stream.adapters.triton.spec import TritonTarget
from rex_stream.engine.backend import ModelInfo
from rex_stream.engine.inputs import ROW_SHAPE, TEXT_DTYPE, TokenInput, is_token_model, token_dtype
from rex_stream.errors import BackendError, BackendTimeout, ConfigError


@dataclass(frozen=True)
class OutputTensor:
    """One output of the model: its name, numpy dtype and dims per input (-1: variable)."""

    name: str
    dtype: np.dtype
    dims: tuple[int, ...]

    @property
    def fixed(self) -> bool:
        """Whether every input's answer has the same size (a shared-memory region fits)."""
        return all(d >= 0 for d in self.dims)


@dataclass(frozen=True)
class ServedModel:
    """A Triton model as rex-stream feeds it."""

    info: ModelInfo
    #: the input's protocol datatype (``FP32``, ``UINT8`` …)
    datatype: str
    #: the scores' numpy dtype
    output_dtype: np.dtype
    #: False: a non-batching model whose input has no batch axis (one input per call)
    batch_axis: bool = True
    #: "NCHW", "NHWC" or None, from the model config
    layout: str | None = None
    #: every output, in the model's order (a run reading all of them: detection)
    outputs: tuple[OutputTensor, ...] = ()


async def read_model(
    client: TritonClient,
    input_shape: tuple[int, ...] | None,
    output: str | None,
    all_outputs: bool = False,
) -> ServedModel:
    """Check the server and model, and read metadata and config."""
    t = client.target
    try:
        await client.call("health check", "is_server_live")
    except BackendTimeout:
        raise
    except BackendError as exc:
        port_hint = "gRPC, default 8001" if t.grpc else "HTTP, default 8000"
        raise BackendError(
            f"cannot reach a Triton server at {t.address} over {t.protocol} "
            f"({exc.__cause__ or exc}); is it running, and is that its {port_hint} port?"
        ) from exc
    ready = await client.call("model readiness check", "is_model_ready", t.model, t.version)
    if not ready:
        raise BackendError(await _not_ready_reason(client))
    extra = {"as_json": True} if t.grpc else {}
    metadata = await client.call(
        "reading model metadata", "get_model_metadata", t.model, t.version, **extra
    )
    config = await client.call(
        "reading model config", "get_model_config", t.model, t.version, **extra
    )
    config = config.get("config", config) if t.grpc else config
    return describe_model(t, metadata, config, input_shape, output, all_outputs)


async def _not_ready_reason(client: TritonClient) -> str:
    """Tell "no such model" from "model not ready", naming what the server has if it says."""
    t = client.target
    try:
        await client.call("reading model metadata", "get_model_metadata", t.model, t.version)
        problem = f"model {t.model!r} is not ready on the server"
    except BackendError as exc:
        server_says = str(exc).split(" failed on the server: ", 1)[-1]
        problem = f"model {t.model!r} not found on the server ({server_says})"
    try:
        index = await client.call("listing models", "get_model_repository_index")
    except BackendError:
        return f"{t}: {problem}"  # the list may be guarded by a token; say what we know
    if hasattr(index, "models"):  # gRPC protobuf response
        index = [{"name": m.name, "state": m.state, "reason": m.reason} for m in index.models]
    entries = index.get("models", []) if isinstance(index, dict) else list(index)
    mine = [e for e in entries if e.get("name") == t.model]
    if mine:
        states = "; ".join(f"{e.get('state', '?')} {e.get('reason', '')}".strip() for e in mine)
        return f"{t}: {problem}: {states}"
    names = ", ".join(sorted({str(e.get("name")) for e in entries}))
    return f"{t}: {problem}; the repository holds: {names}" if names else f"{t}: {problem}"


def describe_model(
    t: TritonTarget,
    metadata: Mapping[str, Any],
    config: Mapping[str, Any],
    wanted: tuple[int, ...] | None,
    output_name: str | None,
    all_outputs: bool = False,
) -> ServedModel:
    """Derive ModelInfo, layout and output choice from metadata and config (``all_outputs``:
    the run reads every output, so none has to be chosen as the scores)."""
    max_batch = int(config.get("max_batch_size", 0) or 0)
    inputs = list(config.get("input", []))
    tokens = _token_inputs(inputs)  # input_ids, attention_mask …: a structured row
    if len(inputs) != 1 and tokens is None:
        names = ", ".join(str(i.get("name")) for i in inputs) or "none"
        raise BackendError(
            f"{t}: rex-stream feeds models with one input, or token ids (input_ids, "
            f"attention_mask, token_type_ids); this one has {names}"
        )
    model_input = inputs[0]
    datatype = _datatype(str(model_input.get("data_type", "TYPE_FP32")))
    datatype = "BYTES" if datatype == "STRING" else datatype  # config's name for BYTES
    text = datatype == "BYTES"  # strings: the server tokenises; one str per row
    dtype = TEXT_DTYPE if text else triton_to_np_dtype(datatype)
    if not text and (dtype is None or np.dtype(dtype).kind not in "fiub"):
        raise BackendError(f"{t}: input datatype {datatype} is not numeric")
    fmt = str(model_input.get("format", "FORMAT_NONE")).removeprefix("FORMAT_")
    dims = _dims(model_input.get("dims"))
    if model_input.get("reshape") is not None:
        dims = _dims(model_input.get("reshape", {}).get("shape")) or dims
    batching = max_batch > 0
    batch_axis = True
    if not batching:
        batch_axis = len(dims) >= 2 and dims[0] in (1, -1)
        if wanted is not None:
            batch_axis = len(dims) == len(wanted) + 1 and dims[0] in (1, -1)
        if batch_axis:
            dims = dims[1:]
    shape = ROW_SHAPE if text or tokens else _resolve_shape(t, dims, wanted)
    if tokens is not None:  # one (L,) field per token input, L settled for all alike
        per_row = [_dims(i.get("dims")) for i in inputs]
        if any(len(d) != 1 + (0 if batching or not batch_axis else 1) for d in per_row):
            raise BackendError(f"{t}: token inputs must be [L] per row; they are {per_row}")
        declared = [TokenInput(n, d, p[-1]) for (n, d), p in zip(tokens, per_row)]
        dtype = token_dtype(declared, wanted, str(t))

    outputs = list(config.get("output", [])) or list(metadata.get("outputs", []))
    if all_outputs and output_name is None and outputs:
        output = outputs[0]
    else:
        output = _choose_output(t, outputs, output_name)
    output_dtype = np.dtype(
        triton_to_np_dtype(_datatype(str(output.get("data_type", "TYPE_FP32")))) or np.float32
    )
    out_dims = _dims(output.get("dims") or output.get("shape"))
    if not batching and batch_axis and out_dims[:1] in ((1,), (-1,)):
        out_dims = out_dims[1:]
    num_classes = math.prod(out_dims) if out_dims and min(out_dims) > 0 else None
    if all_outputs:
        num_classes = None  # several outputs of other shapes: replies are capped generously
    if num_classes is not None and num_classes > MAX_DECLARED_CLASSES:
        raise BackendError(
            f"{t}: the model declares {num_classes} values per row for output "
            f"{output.get('name')!r} (at most {MAX_DECLARED_CLASSES}); is this the right output?"
        )
    preferred = _dims((config.get("dynamic_batching") or {}).get("preferred_batch_size"))
    info = ModelInfo(
        name=t.model, input_name=str(model_input["name"]), input_shape=shape,
        dtype=np.dtype(dtype), max_batch=max_batch if batching else 1,
        num_classes=num_classes, output_name=str(output["name"]),
        preferred_batch=max(preferred) if preferred else None,  # the batcher's favourite
        identity={"kind": "triton", "model": str(t), "versions": metadata.get("versions"),
                  "platform": metadata.get("platform")},
        output_names=tuple(str(o.get("name")) for o in outputs),
    )  # fmt: skip
    layout = fmt if fmt in ("NCHW", "NHWC") else None
    every = tuple(_output_tensor(o, batching, batch_axis) for o in outputs)
    return ServedModel(info, datatype, output_dtype, batch_axis, layout, every)


def _output_tensor(output: Mapping[str, Any], batching: bool, batch_axis: bool) -> OutputTensor:
    """An output's name, dtype and dims per input (the batch axis left out)."""
    declared = output.get("data_type") or output.get("datatype") or "TYPE_FP32"
    dtype = triton_to_np_dtype(_datatype(str(declared)))
    dims = _dims(output.get("dims") or output.get("shape"))
    if not batching and batch_axis and dims[:1] in ((1,), (-1,)):
        dims = dims[1:]
    return OutputTensor(str(output.get("name")), np.dtype(dtype or np.float32), dims)


def _token_inputs(inputs: list[Mapping[str, Any]]) -> list[tuple[str, np.dtype]] | None:
    """(name, dtype) of each input when the model takes token ids, else None."""
    found = []
    for entry in inputs:
        dtype = triton_to_np_dtype(_datatype(str(entry.get("data_type", "TYPE_FP32"))))
        found.append((str(entry.get("name")), np.dtype(dtype or np.float32)))
    integer = [dtype.kind in "iu" for _, dtype in found]
    return found if is_token_model([name for name, _ in found], integer) else None


def _dims(values: Any) -> tuple[int, ...]:
    """Dims from model config JSON (gRPC renders int64 as strings)."""
    return tuple(int(v) for v in values or ())


def _datatype(config_type: str) -> str:
    """``TYPE_FP32`` (config) → ``FP32`` (protocol datatype)."""
    return config_type.removeprefix("TYPE_")


def _resolve_shape(
    t: TritonTarget, dims: tuple[int, ...], wanted: tuple[int, ...] | None
) -> tuple[int, ...]:
    if wanted is None:
        if any(d < 0 for d in dims):
            raise ConfigError(
                f"{t}: the model's input shape {dims} has variable axes; "
                "give the input shape explicitly (BackendSettings.input_shape)"
            )
        return dims
    wanted = tuple(int(d) for d in wanted)
    if len(wanted) != len(dims) or any(d >= 0 and d != w for d, w in zip(dims, wanted)):
        raise ConfigError(
            f"{t}: input shape {wanted} does not fit the model's input {dims} (-1: any size)"
        )
    return wanted


def _choose_output(
    t: TritonTarget, outputs: list[Mapping[str, Any]], name: str | None
) -> Mapping[str, Any]:
    names = [str(o.get("name")) for o in outputs]
    if name is not None:
        for o in outputs:
            if o.get("name") == name:
                return o
        raise ConfigError(f"{t}: option output={name!r}: the model's outputs are {names}")
    if len(outputs) == 1:
        return outputs[0]
    raise ConfigError(
        f"{t}: the model has outputs {names}; choose the one holding scores with output=NAME"
    )
