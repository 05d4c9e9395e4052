"""Evaluating attributions: every metric × input × attribution through one shared scheduler.

Each (input, attribution, metric) is a task; their rows meet in one :class:`RowScorer` in
front of one :class:`Scheduler`, so batches fill across metrics and inputs and no row is
scored twice. With a store, each finished pair is committed at once and ``resume`` picks up
exactly the pairs a killed run had not finished.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
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
from rex_stream.errors import ConfigError, RexStreamError, raise_first_error
from rex_stream.evaluation import batches
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.conventions import Conventions
from rex_stream.evaluation.explainers import (
    BoundExplainer,
    ExplainFunction,
    ReExplain,
    warnings_once,
)
from rex_stream.evaluation.growth import grown_settings, pair_indices
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
from rex_stream.evaluation.sources import (
    MapSource,
    check_origin,
    load_map,
    load_mask,
    note_unchecked,
)
from rex_stream.evaluation.units import check_unit_metrics
from rex_stream.evaluation.variants.pool import VariantPool
from rex_stream.progress import Progress, ticking
from rex_stream.result import InputFailure
from rex_stream.runs.many import INPUT_ERRORS

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

PlanCallback = Callable[[str, dict[str, int]], None]
ProgressCallback = Callable[[int, int], None]


async def evaluate(
    inputs: Inputs | None = None,
    backend: Backend | str | None = None,
    attributions: Attributions | None = None,
    metrics: str | Sequence[MetricChoice] | None = None,
    *,
    model: Backend | str | None = None,
    x_batch: Any = None,
    y_batch: Any = None,
    a_batch: Any = None,
    s_batch: Any = None,
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
    allow_mismatch: bool = False,
    on_event: Callable[[Progress], None] | None = None,
) -> Evaluation:
    """Score ``attributions`` of ``inputs`` with ``metrics`` (``"pixel-flipping,sparseness"``).

    ``inputs``: a file, a directory (every input in it), an array, or a list of them.
    ``attributions``: a map source (array, ``.npy``, directory of ``<stem>.npy``, rex-stream
    ``.zarr`` store), or several, named in a mapping. ``mask`` is the ground truth that the
    localisation metrics need. ``quantus_compatible`` reproduces Quantus 0.6.0's conventions.
    Before an input's metrics run, ``on_plan(input, rows per metric)`` hears its plan, and a
    plan that would take the run past ``max_queries`` rows stops it with a ConfigError.
    ``on_progress(rows answered, rows planned so far)`` hears every scored chunk;
    ``on_event`` hears the same as a :class:`Progress` (rows as done and total, the scheduler's
    call latency, calls in flight and downtime), also every second while no chunk comes.
    ``explainer`` re-explains perturbed inputs for the metrics that need one (max- and
    avg-sensitivity, random-logit): a spec (``"rex:iters=5"``, ``"python:module:function"``),
    a :data:`ReExplain`, or a ``(x, target) -> map`` function; a ReX explainer's queries go
    through this run's scheduler (they count in ``queries``; plans count an estimate).
    A map read from a store group made for another input, model or target than this run's
    is refused unless ``allow_mismatch``.

    Quantus' names work too: ``model`` (= ``backend``), ``x_batch`` (the inputs: an array
    with a batch axis first, or a list), ``y_batch`` (a target class per input), ``a_batch``
    (one map per input, e.g. shape ``(N, 1, H, W)``) and ``s_batch`` (one mask per input).
    """
    started = time.perf_counter()
    quantus = _quantus_arguments(
        inputs, backend, attributions, metrics, model, x_batch, y_batch, a_batch, s_batch, mask
    )
    inputs, backend, attributions, metrics, mask, targets = quantus
    choices = chosen_metrics(metrics)
    if seed < 0:
        raise ConfigError(f"seed = {seed} must be >= 0")
    if concurrent_inputs < 1:
        raise ConfigError(f"concurrent_inputs = {concurrent_inputs} must be >= 1")
    named = named_attributions(attributions)
    check_mask(choices, mask)
    re_explainer = checked_explainer(choices, explainer)
    sources = expand_inputs(inputs)
    for source in (*named.values(), mask):
        batches.check_count(source, len(sources))
    if targets is not None and len(targets) != len(sources):
        raise ConfigError(f"y_batch has {len(targets)} targets for {len(sources)} inputs")
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
            traffic = session.engine.scheduler.stats

            def publish() -> None:
                if on_progress is not None:
                    on_progress(scorer.answered, budget.planned)
                if on_event is not None:
                    done, planned = scorer.answered, budget.planned
                    on_event(Progress.snapshot("evaluation", done, planned, traffic, started))

            scorer.on_scored = publish
            limiter = anyio.CapacityLimiter(max(1, concurrent_inputs))
            run = EvaluationRun(
                session, named, choices, mask, seed, conventions, store, resume, overwrite,
                budget, bound, variants, targets, allow_mismatch,
            )  # fmt: skip

            failures: list[InputFailure | None] = [None] * len(sources)

            async def one(position: int, key: str, source: str | Path | np.ndarray) -> None:
                async with limiter:
                    try:
                        results[position] = await _evaluate_input(run, key, source, position)
                    except (*INPUT_ERRORS, BaseExceptionGroup) as error:
                        reason = input_error(error)
                        if len(sources) == 1 or reason is None:
                            raise  # one input: its error is the run's; others stop the run
                        failures[position] = InputFailure(_shown(source, key), reason)

            ticks = ticking(publish if on_event is not None else None)
            async with variants or nullcontext(), ticks, anyio.create_task_group() as group:
                for position, (key, source) in enumerate(sources):
                    group.start_soon(one, position, key, source)
            stats = session.engine.scheduler.stats
    finished = [r for r in results if r is not None]
    _reduce_across_inputs(finished, choices)
    if not allow_mismatch:  # after the run: a mistake still gets its one line alone
        note_unchecked(named)
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
        failures=[f for f in failures if f is not None],
        total_inputs=len(sources),
    )


def input_error(error: BaseException) -> RexStreamError | None:
    """The error that fails one input alone (unreadable, no map or mask for it, a store
    group it cannot use), or None for one that must stop the whole run."""
    if isinstance(error, BaseExceptionGroup):
        leaves = error.exceptions
        if len(leaves) == 1:
            return input_error(leaves[0])
        return None
    return error if isinstance(error, INPUT_ERRORS) else None


def _shown(source: str | Path | np.ndarray, key: str) -> str:
    """How a failed input is named: its path, or its key for an array."""
    return key if isinstance(source, np.ndarray) else str(source)


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
    targets: list[int] | None = None  # Quantus' y_batch: a class per input
    allow_mismatch: bool = False  # score a stored map made for another input/model/target

    def case(self, subject: Subject, key: str, **given: Any) -> Case:
        """A case of one input under this run's conventions, seed and re-explainers."""
        return Case(
            subject, conventions=self.conventions, seed=self.seed, input_key=key,
            explainer=self.explainer, variants=self.variants, **given,
        )  # fmt: skip


async def _evaluate_input(
    run: EvaluationRun, key: str, source: str | Path | np.ndarray, position: int = 0
) -> InputScores:
    """Every metric of every attribution on one input; with a store, each committed."""
    info, config, scorer = run.session.info, run.session.config, run.session.scorer
    choices, named = run.choices, run.attributions
    subject = await load_input(key, source, info, config, run.conventions)
    check_unit_metrics(subject, choices)  # a text: removal over its units only
    maps = {
        name: load_map(batches.pick(src, position), key, subject, name)
        for name, src in named.items()
    }
    given_mask = batches.pick(run.mask, position)
    mask = load_mask(given_mask, key, subject) if given_mask is not None else None
    base = run.case(subject, key, attribution=np.zeros(subject.spatial_shape), target=0)
    wanted = run.targets[position] if run.targets is not None else config.scoring.target
    target = await scorer.classify(base.original(), wanted)
    if not run.allow_mismatch:  # a stored map must come from this input, model and target
        for name, src in named.items():
            check_origin(batches.pick(src, position), key, subject, info.identity, target, name)
    scores = InputScores(
        str(subject.source or key),
        target,
        features=base.feature_count,
        shape=tuple(subject.spatial_shape),
    )
    store = None
    pairs = [(name, c.label) for name in named for c in choices]
    indices = {pair: position for position, pair in enumerate(pairs)}
    done: dict[tuple[str, str], MetricResult] = {}
    if run.store is not None:
        settings = run_settings(
            info, config, choices, maps, mask, run.seed, run.conventions, target
        )
        if run.explainer is not None and any(c.spec.needs in RE_EXPLAINING for c in choices):
            settings["evaluation"]["explainer"] = run.explainer.name
        store = await anyio.to_thread.run_sync(_open_store, run, key, settings, subject)
        committed = await anyio.to_thread.run_sync(committed_results, store)
        indices, done = pair_indices(pairs, committed)
    scores.resumed = len(done)
    plan = {c.label: planned_rows(c, base) for c in choices}
    pending = [label for name, label in pairs if (name, label) not in done]
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
            for name in named:
                scores.results[name] = {}
                for choice in choices:
                    pair = (name, choice.label)
                    if pair in done:
                        scores.results[name][choice.label] = done[pair]
                    else:
                        group.start_soon(one, indices[pair], name, choice)
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


def _open_store(
    run: EvaluationRun, key: str, settings: dict[str, Any], subject: Subject
) -> ExplanationStore:
    """The input's group; a resumed one may grow (more attributions or metrics), and then
    holds the union of its settings and this run's."""
    grown = None
    if run.resume and run.store is not None:
        grown = grown_settings(ExplanationStore.stored_settings(run.store, key), settings)
    store = ExplanationStore.open(
        run.store,  # type: ignore[arg-type]
        key,
        (lambda stored: grown if stored is None else stored) if grown else settings,
        len(subject.spatial_shape),
        resume=run.resume,
        overwrite=run.overwrite,
    )
    if grown is not None:
        store.update_attributes({"settings": grown})
    return store


def _finish(store: ExplanationStore, source: str, summary: dict[str, dict[str, float]]) -> None:
    """The scores as group attributes (NaN as null, merged with those of the pairs a grown
    group held before), then the group marked complete."""
    held = store.attributes().get("evaluation")
    plain = {str(k): dict(v) for k, v in held.items()} if isinstance(held, Mapping) else {}
    for name, values in summary.items():
        plain.setdefault(name, {}).update(
            {label: (v if np.isfinite(v) else None) for label, v in values.items()}
        )
    store.update_attributes({"source": source, "evaluation": plain})
    store.finish()


def _quantus_arguments(
    inputs: Inputs | None,
    backend: Backend | str | None,
    attributions: Attributions | None,
    metrics: str | Sequence[MetricChoice] | None,
    model: Backend | str | None,
    x_batch: Any,
    y_batch: Any,
    a_batch: Any,
    s_batch: Any,
    mask: MapSource | None,
) -> tuple[Inputs, Backend | str, Any, str | Sequence[MetricChoice], Any, list[int] | None]:
    """rex-stream's arguments from either spelling (ours or Quantus'); giving one thing
    twice, or not at all, is an error naming both spellings."""

    def one(ours: Any, theirs: Any, names: str) -> Any:
        if ours is not None and theirs is not None:
            raise ConfigError(f"give {names}, not both")
        return theirs if ours is None else ours

    if x_batch is not None:
        x_batch = batches.entries(x_batch, "x_batch")
    inputs = one(inputs, x_batch, "inputs or x_batch")
    backend = one(backend, model, "backend or model")
    if isinstance(a_batch, Mapping):  # several methods' maps, by name
        a_batch = {
            str(name): batches.BatchMaps(
                tuple(batches.entries(value, "a_batch")), f"a_batch {name}"
            )
            for name, value in a_batch.items()
        }
    elif a_batch is not None:
        a_batch = {
            "a_batch": batches.BatchMaps(tuple(batches.entries(a_batch, "a_batch")), "a_batch")
        }
    attributions = one(attributions, a_batch, "attributions or a_batch")
    if s_batch is not None:
        s_batch = batches.BatchMaps(tuple(batches.entries(s_batch, "s_batch")), "s_batch")
    mask = one(mask, s_batch, "mask or s_batch")
    for value, names in (
        (inputs, "inputs (or x_batch)"),
        (backend, "a backend (or model)"),
        (attributions, "attributions (or a_batch)"),
        (metrics, "metrics"),
    ):
        if value is None:
            raise ConfigError(f"evaluate() needs {names}")
    targets = None
    if y_batch is not None:
        count = len(inputs) if isinstance(inputs, list) else -1
        targets = batches.targets(y_batch, count) if count >= 0 else None
        if targets is None:
            raise ConfigError("y_batch needs the inputs as a batch (x_batch or a list)")
    assert inputs is not None and backend is not None and metrics is not None
    return inputs, backend, attributions, metrics, mask, targets
