"""What a batch row is made of when a model takes more than one float tensor.

A batch is a set of named input tensors. Most models take one numeric tensor, and the batch
buffer is that tensor (``(N, *input_shape)`` of the model's dtype: the fast path, unchanged).
Two more layouts travel through the same scheduler, still as one numpy buffer:

- **strings** (a text classifier whose server tokenises): ``input_shape (1,)`` of dtype
  ``object``, each row one ``str`` — the ``[N, 1]`` BYTES tensor servers take;
- **several named tensors** (token ids, attention mask, token type ids): a structured dtype
  with one field per input, ``input_shape (1,)``; :func:`named_inputs` splits a batch into the
  ``(N, …)`` arrays a server or session takes. :func:`token_dtype` settles that dtype for
  every backend alike (ONNX, Triton, Open Inference Protocol servers), sequence length
  included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rex_stream.errors import BackendError, ConfigError

#: Token positions sent to a model whose sequence length varies (``--input-shape L``).
DEFAULT_SEQUENCE_LENGTH = 128

#: The words that mark a single integer input as token ids (``input_ids``, ``tokens``).
TOKEN_NAMES = ("ids", "token")

#: The dtype of a batch of strings (one Python ``str`` per row).
TEXT_DTYPE = np.dtype(object)

#: The per-row shape of string and structured batches.
ROW_SHAPE = (1,)


def is_text(dtype: np.dtype) -> bool:
    """Whether a batch of this dtype carries strings."""
    return np.dtype(dtype) == TEXT_DTYPE


def is_named(dtype: np.dtype) -> bool:
    """Whether a batch of this dtype carries several named tensors (a structured dtype)."""
    return np.dtype(dtype).names is not None


def named_dtype(fields: Sequence[tuple[str, np.dtype | type, tuple[int, ...]]]) -> np.dtype:
    """The structured dtype of one row holding the named tensors ``(name, dtype, shape)``."""
    return np.dtype([(name, np.dtype(dtype), tuple(shape)) for name, dtype, shape in fields])


def named_inputs(batch: np.ndarray) -> dict[str, np.ndarray]:
    """A structured batch ``(N, 1)`` as contiguous ``(N, *shape)`` arrays, one per field."""
    rows = batch.reshape(len(batch))
    names = batch.dtype.names or ()
    return {name: np.ascontiguousarray(rows[name]) for name in names}


def text_rows(batch: np.ndarray) -> list[str]:
    """A string batch ``(N, 1)`` as a list of ``str`` (unset rows are empty strings)."""
    return [value if isinstance(value, str) else "" for value in batch.reshape(len(batch))]


def text_bytes(batch: np.ndarray) -> np.ndarray:
    """A string batch as the ``(N, 1)`` object array of UTF-8 ``bytes`` BYTES tensors carry."""
    encoded = np.empty((len(batch), 1), dtype=object)
    encoded[:, 0] = [text.encode("utf-8") for text in text_rows(batch)]
    return encoded


@dataclass(frozen=True)
class TokenInput:
    """One integer input of a token model as its metadata declares it: the per-row length is
    ``None`` (or negative) when it varies."""

    name: str
    dtype: np.dtype
    length: int | None


def is_token_model(names: Sequence[str], integer: Sequence[bool]) -> bool:
    """Whether a model with these inputs (``integer``: each one's type is an integer) takes
    token ids: several integer inputs, or one whose name says ids."""
    if not names or not all(integer):
        return False
    return len(names) > 1 or any(word in names[0].lower() for word in TOKEN_NAMES)


def token_dtype(
    inputs: Sequence[TokenInput], wanted: tuple[int, ...] | None, where: str
) -> np.dtype:
    """The structured row dtype of a token model: one ``(L,)`` field per input, ``L`` the
    model's length, else ``wanted`` (``--input-shape L``), else :data:`DEFAULT_SEQUENCE_LENGTH`."""
    if wanted is not None and len(wanted) != 1:
        raise ConfigError(
            "--input-shape for a token model is one number (the sequence length)",
            key="--input-shape",
        )
    lengths = []
    for model_input in inputs:
        if np.dtype(model_input.dtype).kind not in "iu":
            raise BackendError(f"{where}: token input {model_input.name!r} is not an integer")
        declared = model_input.length
        if declared is not None and declared > 0:
            if wanted is not None and int(wanted[0]) != declared:
                raise ConfigError(
                    f"--input-shape {wanted[0]} contradicts {where}, which takes {declared}",
                    key="--input-shape",
                )
            lengths.append(int(declared))
        else:
            lengths.append(int(wanted[0]) if wanted is not None else DEFAULT_SEQUENCE_LENGTH)
    if len(set(lengths)) > 1:
        raise BackendError(f"{where}: the token inputs have different lengths {sorted(lengths)}")
    return named_dtype([(i.name, i.dtype, (length,)) for i, length in zip(inputs, lengths)])
