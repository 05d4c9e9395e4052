"""ReX 0.4.1's ``negative_responsibility``: the target's map minus every other class's map
(each normalised as the target's is), so elements that also support other classes rank lower."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rex_stream.causal.responsibility import Ledger, build_map, normalise
from rex_stream.config import ResponsibilityStyle


def negative_responsibility(
    target_map: np.ndarray,
    ledgers: Sequence[Ledger],
    target: int,
    shape: Sequence[int],
    style: ResponsibilityStyle,
) -> np.ndarray:
    """``target_map`` minus the normalised map of every other class the mutants were given."""
    others = sorted({int(c) for ledger in ledgers for c in ledger.class_ids()} - {target})
    result = np.asarray(target_map, np.float64).copy()
    for cls in others:
        result -= normalise(build_map(ledgers, cls, shape, style), style)
    return result.astype(np.float32)
