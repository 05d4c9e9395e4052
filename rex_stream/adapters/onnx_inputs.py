"""How an ONNX model's inputs become one batch buffer, and the buffer the session's feed.

One numeric input is the buffer itself (the fast path). A text model takes either strings
(``tensor(string)`` of shape ``[N]`` or ``[N, 1]``: an ``object`` buffer of one ``str`` per row)
or token ids (``input_ids``, ``attention_mask``, ``token_type_ids`` … of shape ``[N, L]``: a
structured buffer with one field per input). A variable sequence length ``L`` is taken from
``--input-shape L`` or is :data:`~rex_stream.engine.inputs.DEFAULT_SEQUENCE_LENGTH`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rex_stream.engine.backend import BackendSettings
from rex_stream.engine.inputs import (
    ROW_SHAPE,
    TEXT_DTYPE,
    TokenInput,
    is_token_model,
    named_inputs,
    token_dtype,
)
from rex_stream.errors import BackendError

_INTEGERS = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}

Feed = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class InputLayout:
    """The batch buffer's per-row shape and dtype, and how a batch feeds the session."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    feed: Feed


def is_text_model(inputs: Sequence[Any]) -> bool:
    """Whether the model takes strings or token ids rather than one numeric tensor."""
    if len(inputs) == 1 and inputs[0].type == "tensor(string)":
        return True
    if len(inputs) > 1:
        return True  # several inputs: token ids, or a model text_layout explains it refuses
    return is_token_model([inputs[0].name], [inputs[0].type in _INTEGERS])


def text_layout(inputs: Sequence[Any], settings: BackendSettings, where: str) -> InputLayout:
    """The layout of a model taking strings or token ids (see the module doc)."""
    if len(inputs) == 1 and inputs[0].type == "tensor(string)":
        name = inputs[0].name
        rank = len(inputs[0].shape)
        if rank not in (1, 2):
            raise BackendError(f"{where}: string input {name!r} must be [N] or [N, 1]")

        def feed_strings(batch: np.ndarray) -> dict[str, np.ndarray]:
            return {name: batch.reshape(len(batch)) if rank == 1 else batch}

        return InputLayout(name, ROW_SHAPE, TEXT_DTYPE, feed_strings)
    fields = []
    for model_input in inputs:
        dtype = _INTEGERS.get(model_input.type)
        if dtype is None or len(model_input.shape) != 2:
            names = ", ".join(f"{i.name} {i.type}" for i in inputs)
            raise BackendError(
                f"{where}: the model has {len(inputs)} inputs ({names}); rex-stream feeds one "
                "numeric tensor, strings, or token ids of shape [N, L] (int64/int32)"
            )
        declared = model_input.shape[1]
        length = declared if isinstance(declared, int) else None
        fields.append(TokenInput(model_input.name, np.dtype(dtype), length))
    wanted = tuple(settings.input_shape) if settings.input_shape is not None else None
    row = token_dtype(fields, wanted, where)

    def feed_tokens(batch: np.ndarray) -> dict[str, np.ndarray]:
        return named_inputs(batch)

    return InputLayout(fields[0].name, ROW_SHAPE, row, feed_tokens)


#: channel counts that mark a rank-3 input as one channels-first picture (no batch axis)
PICTURE_CHANNELS = (3,)


def has_batch_axis(shape: Sequence[int], wanted: Sequence[int] | None) -> bool:
    """Whether the model input's first axis is the batch (``shape``: -1 for a free axis).

    Exports that take one picture (torchvision's detectors: ``(3, H, W)``) have none: an
    input of rank 3 whose first axis is a fixed channel count, or one whose rank equals that
    of the shape asked for (``--input-shape`` naming every axis). Such a model scores one
    input per call, sent without a batch axis.
    """
    if wanted is not None and len(wanted) == len(shape):
        return False
    return not (len(shape) == 3 and shape[0] in PICTURE_CHANNELS and wanted is None)
