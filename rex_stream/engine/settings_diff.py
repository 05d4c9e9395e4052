"""Settings as stored: JSON-compatible copies, and what changed between two of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """JSON-compatible copy (tuples → lists, enums → values, numpy scalars → Python)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, (int, float, str, bool)):
        return plain(value.value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def differences(stored: Any, wanted: Mapping[str, Any]) -> str:
    """The settings that changed, as dotted keys: ``search.min_box_size: 4 → 8``."""
    if not isinstance(stored, Mapping):
        return "no settings recorded"
    before, after = _flatten(stored), _flatten(wanted)
    keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    shown = ", ".join(f"{k}: {_short(before.get(k))} → {_short(after.get(k))}" for k in keys[:4])
    return shown + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one mapping of dotted keys to leaves."""
    if not isinstance(value, Mapping) or not value:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:24] + "…" + text[-24:]
