"""ReX's ``--analyse`` figures that need no model query: explanation area, the map's entropy
and ReX's KL figure, per explanation for multi (insertion/deletion AUCs come from the
evaluation's curves).

ReX 0.4.1 reports as "entropy" ``scipy.stats.entropy(uniform, P, base=2)`` = KL(U‖P) in bits,
with P the map normalised to sum 1: infinite as soon as one element has zero responsibility,
and undefined for maps with negative values. It is kept as ``kl_divergence`` (the number a
ReX user compares, ``None`` where undefined), with two bounded companions: the map's Shannon
entropy H(P) and KL(P‖U) = log2 N − H(P), both in bits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def map_figures(responsibility: np.ndarray) -> dict[str, float | None]:
    """Entropy H(P), KL(P‖U) and ReX's KL(U‖P) of a map, in bits."""
    flat = np.asarray(responsibility, np.float64).ravel()
    total = float(flat.sum())
    if flat.size == 0 or total <= 0 or (flat < 0).any():
        return {"entropy": None, "kl_from_uniform": None, "kl_divergence": None}
    p = flat / total
    nonzero = p[p > 0]
    entropy = float(-(nonzero * np.log2(nonzero)).sum())
    kl_uniform_p = math.inf if (p == 0).any() else float(-math.log2(p.size) - np.log2(p).mean())
    return {
        "entropy": entropy,
        "kl_from_uniform": math.log2(p.size) - entropy,
        "kl_divergence": kl_uniform_p,
    }


def explanation_figures(
    responsibility: np.ndarray, mask: np.ndarray, confidence: float
) -> dict[str, Any]:
    """Area, confidence and the share of the map's responsibility inside one explanation."""
    flat = np.asarray(responsibility, np.float64)
    total = float(np.clip(flat, 0, None).sum())
    inside = float(np.clip(flat[mask], 0, None).sum())
    return {
        "area": float(np.asarray(mask, bool).mean()) if mask.size else 0.0,
        "confidence": float(confidence),
        "responsibility_share": inside / total if total > 0 else None,
    }


def analyse(
    responsibility: np.ndarray,
    masks: Sequence[tuple[int, np.ndarray, float]],
    insertion_auc: float | None,
    deletion_auc: float | None,
) -> dict[str, Any]:
    """The analysis of a run: the map's figures, the AUCs and, for each explanation
    ``(spotlight, mask, confidence)``, its own figures; ``area`` is the first one's."""
    figures: dict[str, Any] = dict(map_figures(responsibility))
    per = [
        {"spotlight": index, **explanation_figures(responsibility, mask, confidence)}
        for index, mask, confidence in masks
    ]
    figures["area"] = per[0]["area"] if per else None
    figures["insertion_auc"] = insertion_auc
    figures["deletion_auc"] = deletion_auc
    if len(per) > 1:
        figures["explanations"] = per
    return figures
