"""What the HTTP backend knows of its model before the first batch: v2 metadata read from the
server (and Triton's ``max_batch_size``), or, for row JSON and custom templates, the settings.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yarl import URL

from rex_stream.adapters.http.protocols import Codec, CustomCodec, ReplyError, RowsCodec
from rex_stream.adapters.http.transport import MAX_DECLARED_CLASSES, HttpTransport
from rex_stream.adapters.http.v2 import (
    V2Codec,
    choose_tensor,
    v2_layout,
    v2_tensor,
    v2_token_layout,
)
from rex_stream.adapters.security import public_url
from rex_stream.engine.backend import BackendSettings, ModelInfo
from rex_stream.engine.inputs import ROW_SHAPE, TEXT_DTYPE
from rex_stream.errors import BackendError, ConfigError

logger = logging.getLogger("rex_stream.adapters.http.backend")


@dataclass(frozen=True)
class ServedModel:
    """The model's metadata, the wire format that suits it and where batches go."""

    info: ModelInfo
    codec: Codec
    protocol: str
    infer_url: URL


def unknown_model(url: URL) -> ModelInfo:
    """What is known of a model before any metadata: its name and URL."""
    return ModelInfo(
        name=url.name or url.host or "http", input_name="", input_shape=(),
        identity={"kind": "http", "url": public_url(url)},
    )  # fmt: skip


async def read_v2_model(transport: HttpTransport, settings: BackendSettings) -> ServedModel:
    """Read v2 model metadata (and Triton's config, for max_batch) and pick a codec."""
    url, options = transport.url, transport.options
    where = public_url(url)
    metadata = await transport.get_json(url)
    try:
        inputs = [v2_tensor(entry, "inputs") for entry in metadata["inputs"]]
        outputs = [v2_tensor(entry, "outputs") for entry in metadata["outputs"]]
    except (KeyError, TypeError) as exc:
        raise BackendError(f"{where}: metadata lacks 'inputs'/'outputs'") from exc
    except ReplyError as exc:
        raise BackendError(f"{where}: {exc}") from None
    tokens = v2_token_layout(inputs, settings, where) if options.input_name is None else None
    output_tensor = choose_tensor(outputs, options.output_name, "output", where)
    input_shape: tuple[int, ...]
    if tokens is not None:  # input_ids, attention_mask …: a structured row, all sent
        input_tensor, input_shape = inputs[0], ROW_SHAPE
        batched, max_batch = tokens[1], tokens[2]
    else:
        input_tensor = choose_tensor(inputs, options.input_name, "input", where)
        input_shape, batched, max_batch = v2_layout(input_tensor, settings, where)
    if input_tensor.datatype == "BYTES":
        input_shape = ROW_SHAPE  # one str per row, whether the model takes [N] or [N, 1]
    server_limit = await _triton_max_batch(transport) if batched else None
    max_batch = options.max_batch or max_batch or server_limit
    protocol = options.protocol
    if protocol == "v2":
        protocol = "v2-binary" if await _advertises_binary(transport) else "v2-json"
    codec = V2Codec(
        input_tensor,
        output_tensor.name,
        binary=protocol == "v2-binary",
        batched=batched,
        outputs=tuple(outputs),
        tokens=None if tokens is None else tokens[0],
    )
    classes = output_tensor.shape[-1] if output_tensor.shape else None
    if classes is not None and classes > MAX_DECLARED_CLASSES:
        raise BackendError(
            f"{where}: metadata declares {classes} values per row for output "
            f"{output_tensor.name!r} (at most {MAX_DECLARED_CLASSES}); is this the right model "
            "and output (output=NAME)?"
        )
    info = ModelInfo(
        name=str(metadata.get("name", url.name)),
        input_name=input_tensor.name,
        input_shape=input_shape,
        dtype=codec.dtype,
        max_batch=max_batch,
        num_classes=classes if classes and classes > 0 else None,
        output_name=output_tensor.name,
        identity={"kind": "http", "url": where, **_v2_identity(metadata)},
        output_names=tuple(o.name for o in outputs),
    )
    logger.info("%s: v2 model %s over %s", where, info.name, protocol)
    return ServedModel(info, codec, protocol, url / "infer")


def plain_model(transport: HttpTransport, settings: BackendSettings) -> ServedModel:
    """Rows/custom: no metadata, so the input shape must come from the settings."""
    url, options = transport.url, transport.options
    if settings.input_shape is None and settings.text_input:  # v1 instances of str
        info = dataclasses.replace(
            unknown_model(url), input_name="instances", input_shape=ROW_SHAPE,
            dtype=TEXT_DTYPE, max_batch=options.max_batch,
        )  # fmt: skip
        strings: Codec = CustomCodec(options.template) if options.template else RowsCodec()
        return ServedModel(info, strings, options.protocol, url)
    if settings.input_shape is None:
        raise ConfigError(
            f"the HTTP rows/custom protocols cannot ask {public_url(url)} for the model's input "
            "shape; give it with --input-shape (e.g. 3,224,224)"
        )
    template = options.template
    codec: Codec = CustomCodec(template) if template is not None else RowsCodec()
    info = dataclasses.replace(
        unknown_model(url),
        input_name="instances",
        input_shape=tuple(settings.input_shape),
        max_batch=options.max_batch,
    )
    return ServedModel(info, codec, options.protocol, url)


async def _triton_max_batch(transport: HttpTransport) -> int | None:
    """Triton publishes ``max_batch_size`` at ``…/config``; other servers may 404 here."""
    config = await transport.get_optional_json(transport.url / "config")
    value = config.get("max_batch_size") if isinstance(config, dict) else None
    return int(value) if isinstance(value, int) and value > 0 else None


async def _advertises_binary(transport: HttpTransport) -> bool:
    """Whether the server metadata (``GET /v2``) lists the binary tensor data extension."""
    url = transport.url
    root = url.with_path(url.path[: url.path.index("/v2/models/")] + "/v2")
    document = await transport.get_optional_json(root)
    extensions = document.get("extensions", []) if isinstance(document, dict) else []
    return "binary_tensor_data" in extensions


def _v2_identity(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """What names the served model in v2 metadata: name, versions, platform."""
    return {k: metadata.get(k) for k in ("name", "versions", "platform")}
