"""What a run returns: one input's :class:`Explanation` (map, explanation, stats), and in a
run over many inputs, an :class:`InputFailure` for an input that could not be explained or an
:class:`InputSummary` for an input a cluster explained (its map stays in the store)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any
from warnings import warn

import numpy as np

from rex_stream.causal.complete import CompleteExplanation
from rex_stream.causal.extraction import Sufficiency
from rex_stream.causal.insertion_deletion import Curves
from rex_stream.causal.multi import MultiExplanation
from rex_stream.config import ExplainConfig
from rex_stream.engine.subject import Subject
from rex_stream.engine.verdicts import Target
from rex_stream.errors import RexStreamError


@dataclass(frozen=True)
class RunStats:
    """What a run cost and found. ``queries`` counts every input the model evaluated for this
    run; ``calls`` the backend calls made while it ran (in directory mode those batches also
    carry other inputs' rows, and ``mean_batch`` is the shared scheduler's)."""

    queries: int
    calls: int
    mean_batch: float
    passing: int
    failing: int
    max_depth: int
    avg_box_size: float
    iterations: int
    resumed_iterations: int
    wall_s: float
    backend_s: float
    #: queries spent on checks of the setup (e.g. whether the model expects normalised input)
    check_queries: int = 0
    #: model round trips on the longest chain of dependent calls (target, levels, extraction)
    round_trips: int = 0


@dataclass
class Explanation:
    """The result of explaining one input.

    Beside the map and the sufficient explanation (``sufficiency``), a run records what else
    it was asked for: ``multi`` (``--multi``), ``complete`` (``--complete``), ``curves`` and
    ``analysis`` (``--analyse``), ``mask_values`` (a swept mask value), and what it noticed:
    ``warnings``. ``label`` is the target class's name, when the caller knows it.
    """

    subject: Subject
    target: Target
    responsibility: np.ndarray
    stats: RunStats
    config: ExplainConfig
    sufficiency: Sufficiency | None = None
    curves: Curves | None = None
    store: str | None = None
    seed: int = 0
    model: str = ""
    multi: MultiExplanation | None = None
    #: the backend's identity of the model (file digest, server version …)
    model_identity: dict[str, Any] = field(default_factory=dict)
    #: what the run warned about (also logged), in the order it noticed
    warnings: list[str] = field(default_factory=list)
    #: the complete explanation and its necessary part (``--complete``)
    complete: CompleteExplanation | None = None
    #: ReX's analysis of the map and the explanations (``--analyse``)
    analysis: dict[str, Any] | None = None
    #: each iteration's own mask value, when the run swept it (``random`` / ``linear``)
    mask_values: list[float] | None = None
    #: the target class's name (``--labels``), for summaries and pictures
    label: str | None = None

    def __repr__(self) -> str:
        explanation = (
            f", explanation {self.sufficiency.area:.1%}" if self.sufficiency is not None else ""
        )
        return (
            f"Explanation({self.subject.source or self.subject.name!r}, "
            f"class {self.target.classification} ({self.target.confidence:.3f}), "
            f"map {tuple(self.responsibility.shape)}{explanation}, "
            f"{self.stats.queries} queries, {self.stats.wall_s:.1f} s)"
        )

    @property
    def extra(self) -> dict[str, Any]:
        """Deprecated: the typed fields (``model_identity``, ``warnings``, ``complete``,
        ``analysis``, ``mask_values``, ``label``) as the old untyped mapping, read-only."""
        warn(
            "Explanation.extra is deprecated: read the typed fields (model_identity, warnings, "
            "complete, analysis, mask_values, label) instead",
            DeprecationWarning,
            stacklevel=2,
        )
        old = {
            "model_identity": self.model_identity,
            "warnings": self.warnings,
            "complete": self.complete,
            "analysis": self.analysis,
            "mask_values": self.mask_values,
            "label": self.label,
        }
        return {key: value for key, value in old.items() if value or key == "model_identity"}

    @property
    def mask(self) -> np.ndarray | None:
        """The sufficient explanation over the spatial axes, if one was extracted."""
        return None if self.sufficiency is None else self.sufficiency.mask

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's ``--json``)."""
        out: dict[str, Any] = {
            "input": self.subject.source or self.subject.name,
            "model": self.model,
            "model_identity": self.model_identity,
            "target": {
                "class": self.target.classification,
                "confidence": self.target.confidence,
                **({"label": self.label} if self.label else {}),
            },
            "seed": self.seed,
            "mode": self.subject.mode,
            "config_file": self.config.config_file,
            "store": self.store,
            "stats": asdict(self.stats),
        }
        if self.sufficiency is not None:
            out["explanation"] = {
                "area": self.sufficiency.area,
                "confidence": self.sufficiency.confidence,
            }
        if self.complete is not None:
            out["complete"] = self.complete.facts()
        if self.analysis is not None:
            out["analysis"] = _finite(self.analysis)
        if self.mask_values:
            out["mask_values"] = self.mask_values
        if self.multi is not None:
            out["explanations"] = [
                {
                    "spotlight": e.index,
                    "area": e.area,
                    "confidence": e.confidence,
                    "centre": list(e.centre),
                }
                for e in self.multi.kept
            ]
            out["multi"] = {
                "spotlights": self.multi.spotlights,
                "found": len(self.multi.found),
                "kept": len(self.multi.kept),
                "failed_spotlights": self.multi.failed_spotlights,
                "queries": self.multi.queries,
                "permitted_overlap": self.config.multi.permitted_overlap,
            }
        if self.curves is not None:
            out["evaluation"] = {
                "insertion_auc": self.curves.insertion_auc,
                "deletion_auc": self.curves.deletion_auc,
            }
        if self.warnings:
            out["warnings"] = list(self.warnings)
        out.update(self.subject.summary_facts(self.mask))  # a text's units, …
        return out


@dataclass(frozen=True)
class InputFailure:
    """An input of a run over many inputs that could not be explained, and why."""

    source: str
    error: RexStreamError


@dataclass(frozen=True)
class InputSummary:
    """A finished input of a cluster run: its summary (what ``--json`` prints), no map."""

    source: str
    name: str
    summary: dict[str, Any]

    @property
    def skipped(self) -> bool:
        """The store already held this input, complete: no model query was made."""
        return bool(self.summary.get("skipped"))


def _finite(value: Any) -> Any:
    """A JSON-safe copy: infinities (ReX's KL figure of a map with zeros) become None."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
