"""The outcome of an evaluation run: scores per input, attribution and metric; a table; JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rex_stream.evaluation.conventions import Conventions
from rex_stream.evaluation.metric import MetricChoice, MetricResult
from rex_stream.pictures.evaluation import ranks
from rex_stream.result import InputFailure


@dataclass
class InputScores:
    """Every metric of every attribution on one input."""

    input: str
    target: int
    results: dict[str, dict[str, MetricResult]] = field(default_factory=dict)
    resumed: int = 0
    #: how many features the metrics ranked (a curve's x values are fractions of it)
    features: int = 0
    #: the target class's name (``--labels``, or the bundled model's names)
    label: str | None = None
    #: the input's spatial shape (a patch curve's x values are fractions of its grid)
    shape: tuple[int, ...] = ()

    @property
    def class_text(self) -> str:
        """``"ladybug (301)"`` when the class has a name, else ``"class 301"``."""
        return f"{self.label} ({self.target})" if self.label else f"class {self.target}"


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
    #: inputs of a run over many that failed alone (unreadable, no map or mask for them)
    failures: list[InputFailure] = field(default_factory=list)
    #: how many inputs the run was given (evaluated or failed)
    total_inputs: int = 0

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
        specs = {c.label: c for c in self.metrics}
        for position, scores in enumerate(self.inputs):
            per_attribution = {
                name: {
                    label: _result_json(result, specs.get(label), scores.features, scores.shape)
                    for label, result in metrics.items()
                }
                for name, metrics in scores.results.items()
            }
            ranked = ranks(self, position)
            inputs.append(
                {
                    "input": scores.input,
                    "target": scores.target,
                    **({"label": scores.label} if scores.label else {}),
                    "resumed": scores.resumed,
                    "attributions": per_attribution,
                    "ranks": {
                        label: dict(zip(self.attributions, values))
                        for label, values in ranked.items()
                    },
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
            **(
                {"failures": [{"input": f.source, "error": str(f.error)} for f in self.failures]}
                if self.failures
                else {}
            ),
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
            lines.append(f"{scores.input}: {scores.class_text}")
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
        if self.failures:
            lines.append(
                f"{len(self.inputs)} of {self.total_inputs} inputs evaluated, "
                f"{len(self.failures)} failed (errors on stderr)"
            )
        lines.append(
            f"{self.queries} queries ({self.requested} rows asked, "
            f"{self.requested - self.queries} from cache{f', {resumed} resumed' if resumed else ''}"
            f") in {self.calls} calls (mean batch {self.mean_batch:.1f}), {self.wall_s:.1f} s"
        )
        return "\n".join(lines)


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _result_json(
    result: MetricResult, choice: MetricChoice | None, features: int, shape: tuple[int, ...] = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "score": _number(result.score),
        "queries": result.queries,
        "seed": result.seed,
    }
    if result.curve is not None:
        curve = np.asarray(result.curve, np.float64).reshape(-1)
        out["curve"] = [_number(v) for v in curve.tolist()]
        if choice is not None:
            x = choice.spec.x_values(choice.params, features, curve.size, shape)
            out["x"] = [_number(v) for v in x.tolist()]
            out["x_axis"] = choice.spec.curve_axis
    return out


def _cell(result: MetricResult | None) -> str:
    if result is None:
        return "-"
    value = result.score
    if not math.isfinite(value):
        return "nan"
    return f"{value:.6g}"
