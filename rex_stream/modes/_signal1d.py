"""Helpers shared by the 1-D modes (tabular, spectral): runs of a mask, option parsing."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rex_stream.engine.options import option_flag
from rex_stream.errors import InputError


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The ``[start, stop)`` intervals where a 1-D boolean ``mask`` is true, in order."""
    flags = np.concatenate([[False], np.asarray(mask, bool).ravel(), [False]])
    edges = np.flatnonzero(np.diff(flags.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def index_runs(indices: np.ndarray) -> list[tuple[int, int]]:
    """The ``[start, stop)`` intervals covering a set of non-negative integer ``indices``."""
    values = np.unique(np.asarray(indices, np.int64))
    if values.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(values) != 1)
    starts = np.concatenate([[values[0]], values[breaks + 1]])
    stops = np.concatenate([values[breaks], [values[-1]]]) + 1
    return [(int(a), int(b)) for a, b in zip(starts, stops)]


def option_int(options: Mapping[str, str], name: str, default: int) -> int:
    """An integer mode option, or ``default`` when absent."""
    raw = options.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InputError(f"mode option {name}={raw!r} must be an integer") from None
    if value < 0:  # a row counts from 0; -1 would silently be the last
        raise InputError(f"mode option {name}={raw!r} must be >= 0")
    return value


def option_float(options: Mapping[str, str], name: str, default: float) -> float:
    """A float mode option, or ``default`` when absent."""
    raw = options.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise InputError(f"mode option {name}={raw!r} must be a number") from None


def option_bool(options: Mapping[str, str], name: str, default: bool) -> bool:
    """A boolean mode option (``true``/``false``/``1``/``0``/``yes``/``no``)."""
    return option_flag(options, name, default, error=InputError, what="mode option")


def check_finite(values: np.ndarray, what: str, names: list[str] | None = None) -> None:
    """Raise a one-line InputError when ``values`` hold NaN or infinities."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    if names is not None and values.ndim >= 1 and values.shape[-1] == len(names):
        columns = [names[i] for i in np.flatnonzero(bad.reshape(-1, len(names)).any(axis=0))]
        shown = ", ".join(columns[:5]) + (" …" if len(columns) > 5 else "")
        raise InputError(f"{what} contains NaN or infinite values (in {shown})")
    raise InputError(f"{what} contains NaN or infinite values ({int(bad.sum())} of them)")
