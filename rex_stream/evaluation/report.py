"""The outcome of an evaluation run: scores per input, attribution and metric; a table; JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rex_stream.evaluation.conventions import Conventions
from rex_stream.evaluation.metric import MetricChoice, MetricResult


@dataclass
class InputScores:
    """Every metric of every attribution on one input."""

    input: str
    target: int
    results: dict[str, dict[str, MetricResult]] = field(default_factory=dict)
    resumed: int = 0


@dataclass
class Evaluation:
    """What :func:`rex_stream.evaluate` returns."""

    metrics: list[MetricChoice]
    attributions: list[str]
    inputs: list[InputScores]
    queries: int
    requested: int
    calls: int
    mean_batch: float
    wall_s: float
    conventions: Conventions
    seed: int
    #: the re-explainer the robustness/randomisation metrics used (its spec), if any
    explainer: str | None = None

    @property
    def compatible(self) -> bool:
        """Whether the metrics followed Quantus 0.6.0's conventions (``--quantus-compatible``)."""
        return self.conventions.quantus_compatible

    def score(self, attribution: str, metric: str, input_index: int = 0) -> float:
        """One score: ``evaluation.score("rex", "pixel-flipping")``."""
        return self.inputs[input_index].results[attribution][metric].score

    def summary(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN → null)."""
        directions = {
            c.label: "higher" if c.spec.higher_is_better else "lower" for c in self.metrics
        }
        inputs = []
        for scores in self.inputs:
            per_attribution = {
                name: {label: _result_json(result) for label, result in metrics.items()}
                for name, metrics in scores.results.items()
            }
            inputs.append(
                {
                    "input": scores.input,
                    "target": scores.target,
                    "resumed": scores.resumed,
                    "attributions": per_attribution,
                }
            )
        return {
            "metrics": {
                c.label: {
                    "quantus": c.spec.quantus,
                    "better": directions[c.label],
                    "params": dict(c.params),
                }
                for c in self.metrics
            },
            "inputs": inputs,
            "queries": self.queries,
            "rows_requested": self.requested,
            "calls": self.calls,
            "mean_batch": round(self.mean_batch, 2),
            "wall_s": round(self.wall_s, 3),
            "quantus_compatible": self.conventions.quantus_compatible,
            "seed": self.seed,
            **({"explainer": self.explainer} if self.explainer is not None else {}),
        }

    def table(self) -> str:
        """Metrics down, attributions across, one block per input."""
        lines: list[str] = []
        width = max(len(c.label) for c in self.metrics) + 2
        columns = [max(12, len(name) + 2) for name in self.attributions]
        for scores in self.inputs:
            lines.append(f"{scores.input}: class {scores.target}")
            header = "metric".ljust(width) + "".join(
                name.rjust(w) for name, w in zip(self.attributions, columns)
            )
            lines.append(header + "  better")
            for choice in self.metrics:
                cells = "".join(
                    _cell(scores.results.get(name, {}).get(choice.label)).rjust(w)
                    for name, w in zip(self.attributions, columns)
                )
                arrow = "↑" if choice.spec.higher_is_better else "↓"
                lines.append(choice.label.ljust(width) + cells + f"  {arrow}")
        resumed = sum(s.resumed for s in self.inputs)
        lines.append(
            f"{self.queries} queries ({self.requested} rows asked, "
            f"{self.requested - self.queries} from cache{f', {resumed} resumed' if resumed else ''}"
            f") in {self.calls} calls (mean batch {self.mean_batch:.1f}), {self.wall_s:.1f} s"
        )
        return "\n".join(lines)


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _result_json(result: MetricResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "score": _number(result.score),
        "queries": result.queries,
        "seed": result.seed,
    }
    if result.curve is not None:
        out["curve"] = [_number(v) for v in np.asarray(result.curve, np.float64).tolist()]
    return out


def _cell(result: MetricResult | None) -> str:
    if result is None:
        return "-"
    value = result.score
    if not math.isfinite(value):
        return "nan"
    return f"{value:.6g}"
