"""Contrastive explanations (CEM): pertinent positives and negatives, black-box.

The method optimises a mask over the input's *regions* (features, intervals, grid cells,
blocks) with a zeroth-order gradient estimate: each step of a chain asks the scheduler for
``1 + 2q`` rows (its current solution and ``q`` seeded directions either side). Many chains
(inputs × penalty constants × restarts) run at once, so the scheduler fills its batches; each
chain's state is committed to the store every few steps, so runs resume.

Imports only the engine and the leaf modules ``rex_stream.config`` / ``rex_stream.errors``.
"""

from rex_stream.cem.config import CemConfig, CemKind
from rex_stream.cem.result import CemResult
from rex_stream.cem.search import explain_subject

__all__ = ["CemConfig", "CemKind", "CemResult", "explain_subject"]
