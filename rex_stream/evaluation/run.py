"""Evaluating attributions: every metric × input × attribution through one shared scheduler.

Each (input, attribution, metric) is a task; their rows meet in one :class:`RowScorer` in
front of one :class:`Scheduler`, so batches fill across metrics and inputs and no row is
scored twice. With a store, each finished pair is committed at once and ``resume`` picks up
exactly the pairs a killed run had not finished.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from rex_stream.config import ExplainConfig
from rex_stream.engine.backend import Backend, BackendSettings, ModelInfo
from rex_stream.engine.scheduler import Scheduler
from rex_stream.engine.session import backend_for_run
from rex_stream.engine.store import ExplanationStore
from rex_stream.errors import ConfigError, InputError, StoreError, raise_first_error
from rex_stream.evaluation.case import Case
from rex_stream.evaluation.explainers import (
    BoundExplainer,
    ExplainFunction,
    ReExplain,
    as_re_explainer,
    warnings_once,
)
from rex_stream.evaluation.metric import MetricChoice, MetricResult
from rex_stream.evaluation.metrics.registry import choose
from rex_stream.evaluation.plan import QueryLimit, planned_rows
from rex_stream.evaluation.records import METRIC, committed_results, to_record
from rex_stream.evaluation.report import Evaluation, InputScores
from rex_stream.evaluation.scoring import RowScorer
from rex_stream.evaluation.sources import MapSource, default_name, load_map, load_mask
from rex_stream.evaluation.variants import VariantPool
from rex_stream.evaluation.weights import WeightedModel, local_model
from rex_stream.modes import known_suffixes, load_subject
from rex_stream.naming import input_name

Attributions = Mapping[str, MapSource] | Sequence[MapSource] | MapSource
PlanCallback = Callable[[str, dict[str, int]], None]
ProgressCallback = Callable[[int, int], None]
#: What the metrics that re-explain need (--explainer): perturbed inputs, or changed weights.
RE_EXPLAINING = ("explainer", "weights")


async def evaluate(
    inputs: str | Path | np.ndarray | Sequence[str | Path | np.ndarray],
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
    choices = choose(metrics) if isinstance(metrics, str) else list(metrics)
    if seed < 0:
        raise ConfigError(f"seed = {seed} must be >= 0")
    if concurrent_inputs < 1:
        raise ConfigError(f"concurrent_inputs = {concurrent_inputs} must be >= 1")
    named = named_attributions(attributions)
    if mask is None and any(c.spec.needs == "mask" for c in choices):
        needing = [c.label for c in choices if c.spec.needs == "mask"]
        raise ConfigError(f"{', '.join(needing)} need a ground-truth mask (--mask)")
    re_explainer = checked_explainer(choices, explainer)
    sources = expand_inputs(inputs)
    config = config or ExplainConfig()
    _check_resumable(store, resume)
    weighted = await weights_for(backend, choices)
    with raise_first_error(), warnings_once():
        async with scoring_session(backend, config, backend_settings) as session:
            info, resolved, scheduler, scorer = session
            bound, variants = re_explaining(
                re_explainer, weighted, scheduler, info, resolved, backend_settings
            )
            results: list[InputScores | None] = [None] * len(sources)
            budget = _Budget(max_queries, on_plan)
            if on_progress is not None:
                scorer.on_scored = lambda: on_progress(scorer.answered, budget.planned)
            limiter = anyio.CapacityLimiter(max(1, concurrent_inputs))

            async def one(position: int, key: str, source: str | Path | np.ndarray) -> None:
                async with limiter:
                    results[position] = await _evaluate_input(
                        key,
                        source,
                        info,
                        resolved,
                        scorer,
                        named,
                        choices,
                        mask,
                        seed,
                        quantus_compatible,
                        store,
                        resume,
                        overwrite,
                        budget,
                        bound,
                        variants,
                    )

            async with variants or nullcontext(), anyio.create_task_group() as group:
                for position, (key, source) in enumerate(sources):
                    group.start_soon(one, position, key, source)
            stats = scheduler.stats
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
        compatible=quantus_compatible,
        seed=seed,
        explainer=bound.name if bound is not None else None,
    )


@asynccontextmanager
async def scoring_session(
    backend: Backend | str, config: ExplainConfig, settings: BackendSettings | None
) -> AsyncIterator[tuple[ModelInfo, ExplainConfig, Scheduler, RowScorer]]:
    """An open backend, its scheduler and a row scorer in front of it, for one run."""
    async with backend_for_run(backend, config, settings) as (opened, resolved):
        async with Scheduler(opened, resolved.scheduler) as scheduler:
            yield opened.info, resolved, scheduler, RowScorer(scheduler, resolved.scoring)


def evaluate_sync(*args: Any, **kwargs: Any) -> Evaluation:
    """Blocking :func:`evaluate`."""

    async def run() -> Evaluation:
        return await evaluate(*args, **kwargs)

    return anyio.run(run)


async def _evaluate_input(
    key: str,
    source: str | Path | np.ndarray,
    info: ModelInfo,
    config: ExplainConfig,
    scorer: RowScorer,
    named: dict[str, MapSource],
    choices: list[MetricChoice],
    mask_source: MapSource | None,
    seed: int,
    compatible: bool,
    store_path: str | Path | None,
    resume: bool,
    overwrite: bool,
    budget: _Budget,
    explainer: BoundExplainer | None = None,
    variants: VariantPool | None = None,
) -> InputScores:
    subject = await anyio.to_thread.run_sync(load_subject, source, info, config)
    subject.name = key
    trailing = tuple(range(subject.tensor.ndim - len(subject.spatial_axes), subject.tensor.ndim))
    if compatible and subject.spatial_axes != trailing:
        raise InputError(
            f"--quantus-compatible needs a channel-first input (C, H, W); the model takes "
            f"{subject.tensor.shape} with spatial axes {subject.spatial_axes}"
        )
    maps = {name: load_map(src, key, subject, name) for name, src in named.items()}
    mask = load_mask(mask_source, key, subject) if mask_source is not None else None
    base = Case(
        subject, np.zeros(subject.spatial_shape), 0, compatible, seed, key,
        explainer=explainer, variants=variants,
    )  # fmt: skip
    target = await scorer.classify(base.original(), config.scoring.target)
    scores = InputScores(str(subject.source or key), target)
    store = None
    done: dict[int, tuple[str, str, MetricResult]] = {}
    if store_path is not None:
        settings = _settings(info, config, choices, maps, mask, seed, compatible, target)
        if explainer is not None and any(c.spec.needs in RE_EXPLAINING for c in choices):
            settings["evaluation"]["explainer"] = explainer.name
        store = ExplanationStore.open(
            store_path,
            key,
            settings,
            len(subject.spatial_shape),
            resume=resume,
            overwrite=overwrite,
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
    budget.claim(key, plan, pending)

    async def one(index: int, name: str, choice: MetricChoice) -> None:
        case = Case(
            subject, maps[name], target, compatible, seed, key, name, mask,
            explainer=explainer, variants=variants,
        )  # fmt: skip
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


def checked_explainer(
    choices: Sequence[MetricChoice], explainer: str | ReExplain | ExplainFunction | None
) -> ReExplain | None:
    """The re-explainer the metrics will call, or a one-line error when one needs it and
    none is given."""
    re_explainer = as_re_explainer(explainer) if explainer is not None else None
    if re_explainer is None and any(c.spec.needs in RE_EXPLAINING for c in choices):
        needing = [c.label for c in choices if c.spec.needs in RE_EXPLAINING]
        raise ConfigError(
            f"{', '.join(needing)} re-explain perturbed inputs: pass --explainer "
            "rex[:iters=N] or --explainer python:module:function"
        )
    return re_explainer


def re_explaining(
    re_explainer: ReExplain | None,
    weighted: WeightedModel | None,
    scheduler: Scheduler,
    info: ModelInfo,
    config: ExplainConfig,
    settings: BackendSettings | None,
) -> tuple[BoundExplainer | None, VariantPool | None]:
    """The explainer bound to this run's scheduler, and the pool of weight variants (enter
    it with ``async with``) when a metric randomises the weights."""
    if re_explainer is None:
        return None, None
    bound = BoundExplainer(re_explainer, scheduler, info, config)
    variants = (
        VariantPool(weighted, re_explainer, config, settings) if weighted is not None else None
    )
    return bound, variants


async def weights_for(backend: Backend | str, choices: list[MetricChoice]) -> WeightedModel | None:
    """The model as weights when a metric randomises them (a remote backend is refused)."""
    needing = [c.spec.quantus for c in choices if c.spec.needs == "weights"]
    if not needing:
        return None
    path = local_model(backend, needing[0])
    return await anyio.to_thread.run_sync(WeightedModel.load, path)


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


def _settings(
    info: ModelInfo,
    config: ExplainConfig,
    choices: list[MetricChoice],
    maps: dict[str, np.ndarray],
    mask: np.ndarray | None,
    seed: int,
    compatible: bool,
    target: int,
) -> dict[str, Any]:
    """Everything that decides the results: a resumed group must match it."""

    def digest(array: np.ndarray) -> str:
        data = np.ascontiguousarray(array)
        return hashlib.blake2b(data.tobytes() + str(data.dtype).encode(), digest_size=8).hexdigest()

    return {
        "evaluation": {
            "metrics": [{"metric": c.label, "params": dict(c.params)} for c in choices],
            "attributions": {name: digest(a) for name, a in maps.items()},
            "mask": digest(mask) if mask is not None else None,
            "seed": seed,
            "quantus_compatible": compatible,
        },
        "scoring": asdict(config.scoring),
        "image": asdict(config.image),
        "model": {"name": info.name, "input_shape": list(info.input_shape)},
        "target": target,
    }


def _check_resumable(store: str | Path | None, resume: bool) -> None:
    if resume and store is not None and not Path(store).exists():
        raise StoreError(f"cannot resume: {store} does not exist")


def named_attributions(attributions: Attributions) -> dict[str, MapSource]:
    if isinstance(attributions, Mapping):
        named = {str(k): v for k, v in attributions.items()}
    elif isinstance(attributions, (str, Path, np.ndarray)):
        named = {default_name(attributions, set()): attributions}
    else:
        named = {}
        for source in attributions:
            named[default_name(source, set(named))] = source
    if not named:
        raise ConfigError("no attribution given: pass --attribution A.npy (or NAME=A.npy)")
    return named


def expand_inputs(
    inputs: str | Path | np.ndarray | Sequence[str | Path | np.ndarray],
) -> list[tuple[str, str | Path | np.ndarray]]:
    """(unique key, source) for every input; a directory brings every file a mode reads,
    named as :mod:`rex_stream.naming` names a directory run's store groups."""
    listed: list[str | Path | np.ndarray]
    listed = [inputs] if isinstance(inputs, (str, Path, np.ndarray)) else list(inputs)
    found: list[tuple[str, str | Path | np.ndarray]] = []
    for item in listed:
        if isinstance(item, np.ndarray):
            found.append(("array", item))
        elif Path(item).is_dir():
            root = Path(item)
            suffixes = known_suffixes()
            files = sorted(
                p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
            )
            if not files:
                raise InputError(f"{item}: no input files in it")
            # the names a directory run of rex-stream gives its store groups
            found.extend((input_name(p.relative_to(root)), p) for p in files)
        else:
            found.append((input_name(Path(item).stem), item))
    keys: list[tuple[str, str | Path | np.ndarray]] = []
    taken: set[str] = set()
    for base, item in found:
        key, number = base, 2
        while key in taken:
            key, number = f"{base}-{number}", number + 1
        taken.add(key)
        keys.append((key, item))
    return keys
