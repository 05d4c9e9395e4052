"""Quantus' way of passing data: ``x_batch``, ``y_batch``, ``a_batch``, ``s_batch`` — one
entry per input, as an array with a leading batch axis or as a list — turned into
rex-stream's inputs, per-input maps and per-input targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rex_stream.errors import ConfigError


@dataclass(frozen=True)
class BatchMaps:
    """One map per input, in input order (Quantus' ``a_batch`` or ``s_batch``)."""

    maps: tuple[Any, ...]
    what: str

    def for_input(self, position: int) -> Any:
        """The map of the input at ``position`` (a leading axis of 1 is dropped)."""
        found = self.maps[position]
        if isinstance(found, np.ndarray) and found.ndim > 1 and found.shape[0] == 1:
            return found[0]
        return found


def entries(value: Any, what: str) -> list[Any]:
    """One entry per input: the rows of an array (its first axis is the batch) or the
    items of a list; a single file name or path is refused (that is not a batch)."""
    if isinstance(value, (str, Path)):
        raise ConfigError(f"{what}: expected an array with a batch axis or a list, not {value!r}")
    if isinstance(value, np.ndarray) or (
        hasattr(value, "__array__") and not isinstance(value, Sequence)
    ):
        array = np.asarray(value)
        if array.ndim < 1 or array.shape[0] == 0:
            raise ConfigError(f"{what}: expected a batch axis first, got shape {array.shape}")
        return [array[i] for i in range(array.shape[0])]
    items = list(value)
    if not items:
        raise ConfigError(f"{what}: the batch is empty")
    return [item if isinstance(item, (str, Path)) else np.asarray(item) for item in items]


def targets(value: Any, count: int) -> list[int]:
    """``y_batch``: one class index per input (an array or a list of whole numbers)."""
    found = np.asarray(value).reshape(-1)
    if found.dtype.kind == "f" and np.all(np.isfinite(found)) and np.all(found == np.round(found)):
        found = found.astype(np.int64)
    if found.dtype.kind not in "iu":
        raise ConfigError(f"y_batch: expected one class index per input, got {value!r}"[:200])
    if found.size != count:
        raise ConfigError(f"y_batch has {found.size} targets for {count} inputs")
    if found.size and found.min() < 0:
        raise ConfigError(f"y_batch: class indices must be >= 0, got {int(found.min())}")
    return [int(c) for c in found]


def pick(source: Any, position: int) -> Any:
    """``source`` itself, or the input's own map when it is a :class:`BatchMaps`."""
    return source.for_input(position) if isinstance(source, BatchMaps) else source


def check_count(source: Any, count: int) -> None:
    """A batch of maps must hold one map per input."""
    if isinstance(source, BatchMaps) and len(source.maps) != count:
        raise ConfigError(f"{source.what} has {len(source.maps)} maps for {count} inputs")
