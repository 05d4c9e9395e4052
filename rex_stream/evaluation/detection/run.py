"""``evaluate`` for detection runs: every stored target of every input, each scored against
its own box and its own similarity, all through one detector and one scheduler.

A target's case is the usual one (:class:`~rex_stream.evaluation.case.Case`) with the target's
box as the mask and a scorer whose columns are D-RISE's similarity to the target, so the
localisation metrics and the curve metrics (insertion, deletion, …) run unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings
from rex_stream.errors import ConfigError, InputError, raise_first_error
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.conventions import REX_STREAM
from rex_stream.evaluation.detection.metrics import (
    DETECTION_METRICS,
    box_mask,
    similarity_columns,
)
from rex_stream.evaluation.detection.targets import StoredTarget, stored_targets
from rex_stream.evaluation.metric import MetricChoice, MetricResult, parse_metrics
from rex_stream.evaluation.metrics.registry import METRICS
from rex_stream.evaluation.plan import planned_rows
from rex_stream.evaluation.scoring import LOGIT, RowScorer
from rex_stream.evaluation.session import Inputs, expand_inputs, load_input, named_attributions
from rex_stream.runs.detect import open_detector

Corners = tuple[float, float, float, float]
ProgressCallback = Callable[[int, int], None]


@dataclass
class TargetScores:
    """One stored target's metrics: which input, map and detection, and each result."""

    input: str
    attribution: str
    group: str
    index: int
    label: int
    score: float
    box: Corners  # model pixels
    photo_box: Corners
    similarity: float  # of the unmodified input to the target (its own detection: ~ score)
    results: dict[str, MetricResult] = field(default_factory=dict)


@dataclass
class DetectionEvaluation:
    """Every target's scores and what the run cost."""

    metrics: list[MetricChoice]
    targets: list[TargetScores]
    queries: int
    requested: int
    calls: int
    mean_batch: float
    wall_s: float
    seed: int
    layout: str

    def score(self, group: str, metric: str, attribution: str | None = None) -> float:
        """One metric's score of one target's group (and attribution, if several)."""
        for target in self.targets:
            if target.group == group and attribution in (None, target.attribution):
                return target.results[metric].score
        raise KeyError(group)

    def summary(self) -> dict[str, Any]:
        """Plain JSON values: per target its detection and every metric's score and curve."""
        return {
            "detection_format": self.layout,
            "seed": self.seed,
            "targets": [
                {
                    "input": t.input,
                    "attribution": t.attribution,
                    "group": t.group,
                    "detection": t.index,
                    "class": t.label,
                    "score": t.score,
                    "box": [round(v, 2) for v in t.photo_box],
                    "box_model": [round(v, 2) for v in t.box],
                    "similarity": round(t.similarity, 6),
                    "metrics": {
                        label: {
                            "score": _plain(r.score),
                            "curve": None if r.curve is None else [_plain(v) for v in r.curve],
                            "queries": r.queries,
                        }
                        for label, r in t.results.items()
                    },
                }
                for t in self.targets
            ],
            "queries": self.queries,
            "rows_requested": self.requested,
            "calls": self.calls,
            "mean_batch": round(self.mean_batch, 2),
            "wall_s": round(self.wall_s, 3),
        }

    def table(self) -> str:
        """A text table: one line per target, one column per metric (↑/↓: better)."""
        labels = [c.label for c in self.metrics]
        arrows = {c.label: "↑" if c.spec.higher_is_better else "↓" for c in self.metrics}
        head = ["target", *(f"{label} {arrows[label]}" for label in labels)]
        rows = [head]
        for t in self.targets:
            name = f"{t.group} [{t.attribution}] class {t.label}"
            rows.append([name, *(f"{t.results[label].score:.4f}" for label in labels)])
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        return "\n".join(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
            for row in rows
        )


def _plain(value: float) -> float | None:
    return round(float(value), 6) if np.isfinite(value) else None


def detection_metrics(metrics: str | Sequence[MetricChoice]) -> list[MetricChoice]:
    """The chosen metrics, each one that a detection target can take."""
    every = {**METRICS, **DETECTION_METRICS}
    chosen = parse_metrics(metrics, every) if isinstance(metrics, str) else list(metrics)
    for choice in chosen:
        if choice.spec.name not in DETECTION_METRICS:
            raise ConfigError(
                f"metric {choice.spec.name} does not apply to a detection (it re-explains or "
                f"spans several inputs); these do: "
                f"{', '.join(sorted(DETECTION_METRICS))}"
            )
    return chosen


async def evaluate_detections(
    inputs: Inputs,
    backend: Backend | str,
    attributions: str | Path | Mapping[str, str | Path],
    metrics: str | Sequence[MetricChoice],
    *,
    layout: str | None = None,
    config: ExplainConfig | None = None,
    seed: int = 0,
    backend_settings: BackendSettings | None = None,
    allow_mismatch: bool = False,
    on_progress: ProgressCallback | None = None,
) -> DetectionEvaluation:
    """Score the stored explanations of detections of ``inputs`` with ``metrics``.

    ``attributions``: a detection run's store (``RUNS.zarr``: every ``<input>__detection-<i>``
    group of each input) or one group (``RUNS.zarr/<group>``), or several by name. Each target
    is scored with its box as the mask (``energy-in-box``, ``pointing-game``, …) and D-RISE's
    similarity to it as the model's score (``insertion``, ``deletion``, …). ``layout`` (the
    stored runs' by default) says how the detector's outputs read. A group made with another
    model is refused unless ``allow_mismatch``.
    """
    started = time.perf_counter()
    choices = detection_metrics(metrics)
    if seed < 0:
        raise ConfigError(f"seed = {seed} must be >= 0")
    config = config or ExplainConfig()
    named = named_attributions(attributions)
    sources = expand_inputs(inputs)
    found: list[tuple[str, str | Path | np.ndarray, str, StoredTarget]] = []
    for key, source in sources:
        for name, where in named.items():
            if not isinstance(where, (str, Path)):
                raise ConfigError(f"attribution {name}: give a detection run's store RUNS.zarr")
            targets = await anyio.to_thread.run_sync(stored_targets, where, key)
            found.extend((key, source, name, target) for target in targets)
    layout = _one_layout(layout, [target for *_, target in found])
    with raise_first_error():
        async with open_detector(backend, config, layout, backend_settings) as opened:
            detector, scheduler, resolved = opened
            subjects = {}
            for key, source in sources:
                subjects[key] = await load_input(key, source, detector.info, resolved, REX_STREAM)
            cases = []
            for key, _, name, target in found:
                subject = subjects[key]
                _check(target, subject.spatial_shape, detector.info.identity, allow_mismatch)
                case = Case(
                    subject,
                    attribution=target.responsibility,
                    target=target.label,
                    seed=seed,
                    input_key=f"{key}/{target.group}",
                    attribution_name=name,
                    mask=box_mask(target.box, subject.spatial_shape),
                )
                cases.append((key, target, case))
            planned = sum(1 + sum(planned_rows(c, case) for c in choices) for *_, case in cases)
            scorers = [
                RowScorer(scheduler, t.rule, similarity_columns(t.rule)) for _, t, _ in cases
            ]

            def report() -> None:
                if on_progress is not None:
                    answered = sum(s.answered for s in scorers)
                    on_progress(answered, max(answered, planned))

            scored: list[TargetScores] = []

            async def one(key: str, target: StoredTarget, case: Case, scorer: RowScorer) -> None:
                scorer.on_scored = report
                original = await scorer.score([case.original()], target.label)
                result = TargetScores(
                    str(case.subject.source or key), case.attribution_name, target.group,
                    target.index, target.label, target.score, target.box, target.photo_box,
                    float(original[0, LOGIT]),
                )  # fmt: skip
                scored.append(result)

                async def metric(choice: MetricChoice) -> None:
                    result.results[choice.label] = await choice.spec.compute(
                        case, choice.params, scorer
                    )

                async with anyio.create_task_group() as group:
                    for choice in choices:
                        group.start_soon(metric, choice)
                result.results = {c.label: result.results[c.label] for c in choices}

            async with anyio.create_task_group() as group:
                for (key, target, case), scorer in zip(cases, scorers):
                    group.start_soon(one, key, target, case, scorer)
            stats = scheduler.stats
    order = {(t.group, n): i for i, (_, _, n, t) in enumerate(found)}
    scored.sort(key=lambda t: order[(t.group, t.attribution)])
    return DetectionEvaluation(
        metrics=choices,
        targets=scored,
        queries=sum(s.sent for s in scorers),
        requested=sum(s.requested for s in scorers),
        calls=stats.calls,
        mean_batch=stats.mean_batch,
        wall_s=time.perf_counter() - started,
        seed=seed,
        layout=layout,
    )


def _one_layout(given: str | None, targets: list[StoredTarget]) -> str:
    """The detector's layout: the one given, which every stored target must share."""
    stored = sorted({t.layout for t in targets})
    if given is not None and stored and stored != [given]:
        raise ConfigError(
            f"--detections {given}: the stored runs read the detector as {', '.join(stored)}",
            key="--detections",
        )
    if given is None and len(stored) != 1:
        raise ConfigError(
            f"the stored runs read the detector in several layouts ({', '.join(stored)}): "
            "evaluate one at a time",
            key="--detections",
        )
    return given or stored[0]


def _check(
    target: StoredTarget,
    shape: tuple[int, ...],
    identity: Mapping[str, Any],
    allow_mismatch: bool,
) -> None:
    """The stored map must be over this input's pixels, and made with this model."""
    if target.responsibility.shape != tuple(shape):
        raise InputError(
            f"{target.group}: its map is {target.responsibility.shape}, the input "
            f"{tuple(shape)} in the model's pixels"
        )
    stored = target.identity.get("sha256")
    if not allow_mismatch and stored and stored != identity.get("sha256"):
        raise InputError(
            f"{target.group} was explained with another model (sha256 {stored[:12]}…, this "
            f"one {str(identity.get('sha256'))[:12]}…); --allow-mismatch scores it anyway"
        )
