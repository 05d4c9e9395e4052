"""How far a meta-evaluation run has got in its store, for the kill -9 tests."""

from __future__ import annotations

import json
from pathlib import Path


def committed_copies(store: Path) -> int:
    """Committed records, a finished group's pack counting the records it holds."""
    total = 0
    for meta in store.glob("*/meta-copy/*/zarr.json"):
        try:
            attributes = json.loads(meta.read_text()).get("attributes", {})
        except (OSError, ValueError):
            continue  # being written
        if attributes.get("committed"):
            total += len(attributes.get("records", [None]))
    return total
