"""Evaluating attributions: every metric × input × attribution through one shared scheduler.

Each (input, attribution, metric) is a task; their rows meet in one :class:`RowScorer` in
front of one :class:`Scheduler`, so batches fill across metrics and inputs and no row is
scored twice. With a store, each finished pair is committed at once and ``resume`` picks up
exactly the pairs a killed run had not finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings
from rex_stream.engine.store import ExplanationStore
from rex_stream.engine.subject import Subject
from rex_stream.errors import ConfigError, raise_first_error
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.conventions import Conventions
from rex_stream.evaluation.explainers import (
    BoundExplainer,
    ExplainFunction,
    ReExplain,
    warnings_once,
)
from rex_stream.evaluation.metric import MetricChoice, MetricResult
from rex_stream.evaluation.plan import QueryLimit, planned_rows
from rex_stream.evaluation.records import METRIC, committed_results, to_record
from rex_stream.evaluation.report import Evaluation, InputScores
from rex_stream.evaluation.session import (
    RE_EXPLAINING,
    Attributions,
    Inputs,
    ScoringSession,
    check_mask,
    check_resumable,
    checked_explainer,
    chosen_metrics,
    expand_inputs,
    load_input,
    named_attributions,
    re_explaining,
    run_settings,
    scoring_session,
    weights_for,
)
from rex_stream.evaluation.sources import MapSource, load_map, load_mask
from rex_stream.evaluation.variants.pool import VariantPool

PlanCallback = Callable[[str, dict[str, int]], None]
ProgressCallback = Callable[[int, int], None]


async def evaluate(
    inputs: Inputs,
    backend: Backend | str,
    attributions: Attributions,
    metrics: str | Sequence[MetricChoice],
    *,
    mask: MapSource | None = None,
    config: ExplainConfig | None = None,
    seed: int = 0,
    quantus_compatible: bool = False,
    store: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    backend_settings: BackendSettings | None = None,
    concurrent_inputs: int = 4,
    max_queries: int | None = None,
    on_plan: PlanCallback | None = None,
    on_progress: ProgressCallback | None = None,
    explainer: str | ReExplain | ExplainFunction | None = None,
) -> Evaluation:
    """Score ``attributions`` of ``inputs`` with ``metrics`` (``"pixel-flipping,sparseness"``).

    ``inputs``: a file, a directory (every input in it), an array, or a list of them.
    ``attributions``: a map source (array, ``.npy``, directory of ``<stem>.npy``, rex-stream
    ``.zarr`` store), or several, named in a mapping. ``mask`` is the ground truth that the
    localisation metrics need. ``quantus_compatible`` reproduces Quantus 0.6.0's conventions.
    Before an input's metrics run, ``on_plan(input, rows per metric)`` hears its plan, and a
    plan that would take the run past ``max_queries`` rows stops it with a ConfigError.
    ``on_progress(rows answered, rows planned so far)`` hears every scored chunk.
    ``explainer`` re-explains perturbed inputs for the metrics that need one (max- and
    avg-sensitivity, random-logit): a spec (``"rex:iters=5"``, ``"python:module:function"``),
    a :data:`ReExplain`, or a ``(x, target) -> map`` function; a ReX explainer's queries go
    through this run's scheduler (they count in ``queries``; plans count an estimate).
    """
    started = time.perf_counter()
    choices = chosen_metrics(metrics)
    if seed < 0:
        raise ConfigError(f"seed = {seed} must be >= 0")
    if concurrent_inputs < 1:
        raise ConfigError(f"concurrent_inputs = {concurrent_inputs} must be >= 1")
    named = named_attributions(attributions)
    check_mask(choices, mask)
    re_explainer = checked_explainer(choices, explainer)
    sources = expand_inputs(inputs)
    config = config or ExplainConfig()
    check_resumable(store, resume)
    conventions = Conventions.for_flag(quantus_compatible)
    weighted = await weights_for(backend, choices)
    with raise_first_error(), warnings_once():
        async with scoring_session(backend, config, backend_settings) as session:
            bound, variants = re_explaining(re_explainer, weighted, session, backend_settings)
            results: list[InputScores | None] = [None] * len(sources)
            budget = _Budget(max_queries, on_plan)
            scorer = session.scorer
            if on_progress is not None:
                scorer.on_scored = lambda: on_progress(scorer.answered, budget.planned)
            limiter = anyio.CapacityLimiter(max(1, concurrent_inputs))
            run = EvaluationRun(
                session, named, choices, mask, seed, conventions, store, resume, overwrite,
                budget, bound, variants,
            )  # fmt: skip

            async def one(position: int, key: str, source: str | Path | np.ndarray) -> None:
                async with limiter:
                    results[position] = await _evaluate_input(run, key, source)

            async with variants or nullcontext(), anyio.create_task_group() as group:
                for position, (key, source) in enumerate(sources):
                    group.start_soon(one, position, key, source)
            stats = session.engine.scheduler.stats
    finished = [r for r in results if r is not None]
    _reduce_across_inputs(finished, choices)
    return Evaluation(
        metrics=choices,
        attributions=list(named),
        inputs=finished,
        queries=scorer.sent
        + (bound.queries if bound else 0)
        + (variants.queries if variants else 0),
        requested=scorer.requested
        + (bound.requested if bound else 0)
        + (variants.queries if variants else 0),
        calls=stats.calls,
        mean_batch=stats.mean_batch,
        wall_s=time.perf_counter() - started,
        conventions=conventions,
        seed=seed,
        explainer=bound.name if bound is not None else None,
    )


class _Budget:
    """The rows planned so far, against ``--max-queries``."""

    def __init__(self, limit: int | None, report: PlanCallback | None) -> None:
        self.limit = QueryLimit(limit)
        self.report = report

    @property
    def planned(self) -> int:
        """The queries planned so far."""
        return self.limit.planned

    def claim(self, key: str, plan: dict[str, int], pending: list[str]) -> None:
        """Add one input's plan: f(x) and the ``pending`` (not resumed) metric labels, one per
        (attribution, metric); refuse when the run passes the limit."""
        if self.report is not None:
            self.report(key, plan)
        detail = f"{', '.join(f'{k} {v}' for k, v in plan.items())} per attribution"
        queries = 1 + sum(plan[label] for label in pending)
        self.limit.add(key, queries, "the plan needs", detail)


@dataclass(frozen=True)
class EvaluationRun:
    """What every input of one :func:`evaluate` call shares."""

    session: ScoringSession
    attributions: dict[str, MapSource]
    choices: list[MetricChoice]
    mask: MapSource | None
    seed: int
    conventions: Conventions
    store: str | Path | None
    resume: bool
    overwrite: bool
    budget: _Budget
    explainer: BoundExplainer | None = None
    variants: VariantPool | None = None

    def case(self, subject: Subject, key: str, **given: Any) -> Case:
        """A case of one input under this run's conventions, seed and re-explainers."""
        return Case(
            subject, conventions=self.conventions, seed=self.seed, input_key=key,
            explainer=self.explainer, variants=self.variants, **given,
        )  # fmt: skip


async def _evaluate_input(
    run: EvaluationRun, key: str, source: str | Path | np.ndarray
) -> InputScores:
    """Every metric of every attribution on one input; with a store, each committed."""
    info, config, scorer = run.session.info, run.session.config, run.session.scorer
    choices, named = run.choices, run.attributions
    subject = await load_input(key, source, info, config, run.conventions)
    maps = {name: load_map(src, key, subject, name) for name, src in named.items()}
    mask = load_mask(run.mask, key, subject) if run.mask is not None else None
    base = run.case(subject, key, attribution=np.zeros(subject.spatial_shape), target=0)
    target = await scorer.classify(base.original(), config.scoring.target)
    scores = InputScores(str(subject.source or key), target)
    store = None
    done: dict[int, tuple[str, str, MetricResult]] = {}
    if run.store is not None:
        settings = run_settings(
            info, config, choices, maps, mask, run.seed, run.conventions, target
        )
        if run.explainer is not None and any(c.spec.needs in RE_EXPLAINING for c in choices):
            settings["evaluation"]["explainer"] = run.explainer.name
        store = ExplanationStore.open(
            run.store,
            key,
            settings,
            len(subject.spatial_shape),
            resume=run.resume,
            overwrite=run.overwrite,
        )
        done = await anyio.to_thread.run_sync(committed_results, store)
    scores.resumed = len(done)
    plan = {c.label: planned_rows(c, base) for c in choices}
    pending = [
        c.label
        for a in range(len(named))
        for m, c in enumerate(choices)
        if a * len(choices) + m not in done
    ]
    run.budget.claim(key, plan, pending)

    async def one(index: int, name: str, choice: MetricChoice) -> None:
        case = run.case(
            subject, key, attribution=maps[name], target=target, attribution_name=name, mask=mask
        )
        result = await choice.spec.compute(case, choice.params, scorer)
        if store is not None:
            record = to_record(index, choice.label, name, result)
            await anyio.to_thread.run_sync(store.commit, METRIC, record)
        scores.results[name][choice.label] = result

    try:
        async with anyio.create_task_group() as group:
            for a_index, name in enumerate(named):
                scores.results[name] = {}
                for m_index, choice in enumerate(choices):
                    index = a_index * len(choices) + m_index
                    if index in done:
                        scores.results[name][choice.label] = done[index][2]
                    else:
                        group.start_soon(one, index, name, choice)
        # keep the metrics in the order asked, whichever finished first
        for name in named:
            scores.results[name] = {c.label: scores.results[name][c.label] for c in choices}
        if store is not None:
            summary = {
                name: {label: r.score for label, r in results.items()}
                for name, results in scores.results.items()
            }
            await anyio.to_thread.run_sync(_finish, store, scores.input, summary)
    finally:
        if store is not None:
            store.close()
    return scores


def _reduce_across_inputs(inputs: list[InputScores], choices: list[MetricChoice]) -> None:
    """Metrics defined over the set of inputs (sensitivity-n) get their one score."""
    for choice in choices:
        reduce = choice.spec.across_inputs
        if reduce is None:
            continue
        for name in inputs[0].results if inputs else ():
            per_input = [scores.results[name][choice.label] for scores in inputs]
            score = reduce(per_input, choice.params)
            for scores in inputs:
                result = scores.results[name][choice.label]
                scores.results[name][choice.label] = replace(result, score=score)


def _finish(store: ExplanationStore, source: str, summary: dict[str, dict[str, float]]) -> None:
    """The scores as group attributes (NaN as null), then the group marked complete."""
    plain = {
        name: {label: (v if np.isfinite(v) else None) for label, v in values.items()}
        for name, values in summary.items()
    }
    store.update_attributes({"source": source, "evaluation": plain})
    store.finish()
